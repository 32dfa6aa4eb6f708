using System.Diagnostics;
using System.Text.Json;
using GuideCopy.Cli.GuestWatch;
using GuideCopy.Lab;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Controller;
using GuideCopy.Migration.Journal;
using GuideCopy.Migration.Report;
using GuideCopy.Migration.Guide;

namespace GuideCopy.Kvm.Tests.Migration;

/// <summary>
/// The fault matrix (docs/migration.md, "Faults and what they leave"): each cell is a real lab
/// migration of a real guest with a real fault — a process killed with a real signal, a reply
/// dropped by the agent, the link taken down. After it exactly one copy of the VM runs, the
/// guest's own checksums are OK and its heartbeats go on, the outcome says what happened, and
/// nothing is left over.
/// </summary>
[TestFixture]
[Category("FaultMatrix")]
[NonParallelizable]
public sealed class FaultMatrixTests
{
    private const string Name = "gcfm";
    private const string Domain = "fm-kv";
    private LabRig _lab = null!;
    private TestGuest _guest = null!;
    private LabHost _on = null!;

    [OneTimeSetUp]
    public void Up()
    {
        _lab = MigrationLab.Up(Name);
        _guest = TestGuest.Boot(_lab, _lab.A, new TestGuestSpec(Domain, "kv", MemoryMiB: 384));
        _guest.WaitForHeartbeats(2, TimeSpan.FromSeconds(120));
        _on = _lab.A;
    }

    [OneTimeTearDown]
    public void Down() => LabRig.Down(Name);

    /// <summary>Work files an earlier cell left: that cell failed for them; this one answers only for its own.</summary>
    private string[] _leftBefore = [];

    [SetUp]
    public void NoteLeftovers() => _leftBefore = LeftWork();

    [TearDown]
    public void EnsureAgents()
    {
        MigrationLab.KeepAgentLogsIfFailed(_lab);
        // A cell that failed half-way leaves no controller behind: one held before its commit
        // would keep the guest's migration open and fail every later cell.
        foreach (int pid in _clis)
        {
            // By pid: its cell may have disposed the Process object (a using) without waiting.
            if (File.Exists($"/proc/{pid}/cmdline") && File.ReadAllText($"/proc/{pid}/cmdline").Contains("guidecopy.dll"))
            {
                CommandRunner.Run("kill", "-9", pid.ToString());
            }
        }

        _clis.Clear();
        _lab.SetLink(up: true);
        foreach (var h in _lab.Hosts)
        {
            if (LabRig.AgentPid(h) is null)
            {
                _lab.StartAgent(h, MigrationLab.AgentLaunch);
            }
        }

        // A cell that failed before its AssertRunsOnlyOn left _on where the guest was: the next
        // cell would look for it on the wrong host and fail too. Start it where the guest runs.
        var running = _lab.Hosts.Where(h => h.DomainNames().Contains(Domain)).ToList();
        if (running.Count == 1 && running[0] != _on)
        {
            TestContext.Out.WriteLine($"the guest runs on {running[0].Name}, not {_on.Name}: the next cell starts there");
            _on = running[0];
        }
    }

    /// <summary>
    /// A background job of a non-interactive shell starts with SIGINT ignored (POSIX), and the
    /// CLI, as every program should, keeps a signal ignored at its start: Ctrl-C cannot reach it
    /// there, and these cells would only measure how the tests were launched.
    /// </summary>
    private static void IgnoreIfSigintCannotArrive()
    {
        string? ignored = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        if (ignored is not null && (Convert.ToUInt64(ignored[7..].Trim(), 16) & (1UL << (2 - 1))) != 0)
        {
            Assert.Ignore("SIGINT is ignored in this process (started as a background job of a non-interactive shell): run the tests in the foreground");
        }
    }

    private LabHost Other => _on == _lab.A ? _lab.B : _lab.A;

    /// <summary>A hop from where the guest is to the other host; the push capped so the transfer lasts seconds.</summary>
    private MigrationPlan Hop(Func<Task>? beforeCommit = null, Func<Task>? afterCommit = null) => new(
        Domain, Target(_on), Target(Other), "guide", 8_000_000, SharedSecret.Read(_lab.SecretFile),
        GuestWatch: new ConsoleGuestWatch(), ObserveAfter: TimeSpan.Zero, BeforeCommit: beforeCommit, AfterCommit: afterCommit);

    private static MigrationTarget Target(LabHost h) => MigrationLab.Target(h);

    private static void Kill9(int pid) => CommandRunner.Check("kill", "-9", pid.ToString());

    /// <summary>The host's agent killed and started again with these settings (fault injection).</summary>
    private void RestartAgentWith(LabHost h, params string[] settings)
    {
        Kill9(AgentOf(h));
        _lab.StartAgent(h, MigrationLab.AgentLaunch, settings);
    }

    private static int AgentOf(LabHost h) => LabRig.AgentPid(h) ?? throw new InvalidOperationException($"no agent on {h.Name}");

    /// <summary>What a user checks: one QEMU of the guest, on <paramref name="host"/>, running, checksums OK, no work files left.</summary>
    private void AssertRunsOnlyOn(LabHost host, TimeSpan? settle = null)
    {
        // The agents finish on their own; give them the time a transfer takes.
        var deadline = DateTime.UtcNow + (settle ?? TimeSpan.FromSeconds(120));
        var other = _lab.Hosts.Single(h => h != host);
        while (DateTime.UtcNow < deadline && (other.DomainNames().Contains(Domain) || NewLeftWork().Length > 0))
        {
            Thread.Sleep(500);
        }

        _on = host.DomainNames().Contains(Domain) ? host : other; // the next cell starts where the guest is
        Assert.That(CommandRunner.Check("virsh", "-c", host.LibvirtUri, "domstate", Domain).Trim(), Is.EqualTo("running"));
        Assert.That(other.DomainNames(), Does.Not.Contain(Domain), $"a copy of {Domain} is left on {other.Name}");
        Assert.That(CommandRunner.Run("pgrep", "-f", $"guest={Domain}").StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(1),
            "exactly one QEMU of the guest must run");
        Assert.That(NewLeftWork(), Is.Empty, "work files left; the agents' last lines:\n" + AgentLogTails());
        Assert.That(_lab.Hosts.SelectMany(FrozenLinks), Is.Empty, "frozen RAM links left");
        MigrationLab.AssertHeartbeatsContinue(_guest);
    }

    private string AgentLogTails() => string.Join("\n", _lab.Hosts.Select(h =>
    {
        string log = Path.Combine(_lab.Layout.HostDir(h.Name), "agent.log");
        return $"--- {h.Name}:\n" + (File.Exists(log) ? string.Join("\n", File.ReadLines(log).TakeLast(25)) : "(no log)");
    }));

    /// <summary>The source agent's own links to frozen RAM (SourceSide keeps them under RamDir/guidecopy-frozen).</summary>
    private static string[] FrozenLinks(LabHost h)
    {
        string dir = $"{h.RootPath}{h.RamDir}/guidecopy-frozen";
        return Directory.Exists(dir) ? Directory.GetFiles(dir) : [];
    }

    private string[] NewLeftWork() => LeftWork().Except(_leftBefore).ToArray();

    private string[] LeftWork() => _lab.Hosts.SelectMany(h =>
    {
        string work = $"{h.RootPath}/run/guidecopy/work";
        return Directory.Exists(work) ? Directory.GetFileSystemEntries(work) : [];
    }).ToArray();

    private JournalEntry? Journaled(LabHost h, string id) => new MigrationJournal(_lab.JournalDir(h)).Read(id);

    [Test]
    public async Task LostReplyToTheResumeCompletes()
    {
        // Before: the controller took the lost reply for a failure and rolled back: it destroyed
        // the running destination and resumed the stale source (split brain). The resume is the
        // end of dest.load (the destination commits as soon as its QEMU loaded): its reply is lost.
        var destination = Other;
        RestartAgentWith(destination, "Agent:DropReplyTo=dest.load");
        try
        {
            var migration = new GuideCopyMigration(Hop());
            var report = await migration.RunAsync(CancellationToken.None);
            Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
            Assert.That(File.ReadAllText(Path.Combine(_lab.Layout.HostDir(destination.Name), "agent.log")), Does.Contain("reply dropped"));
            Assert.That(Journaled(destination, migration.Id)!.Stage, Is.EqualTo(MigrationStage.Completed));
            Assert.That(Journaled(_on, migration.Id)!.Stage, Is.EqualTo(MigrationStage.Completed));
            AssertRunsOnlyOn(destination);
        }
        finally
        {
            Kill9(AgentOf(destination));
            _lab.StartAgent(destination, MigrationLab.AgentLaunch);
        }
    }

    [Test]
    public async Task SourceAgentKilledMidTransferIsServedAgainAfterRestart()
    {
        var source = _on;
        var destination = Other;
        var report = await new GuideCopyMigration(Hop(afterCommit: async () =>
        {
            await Task.Delay(1000);
            Kill9(AgentOf(source));
            await Task.Delay(2000);
            _lab.StartAgent(source, MigrationLab.AgentLaunch);
        })).RunAsync(CancellationToken.None);
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
        Assert.That(File.ReadAllText(Path.Combine(_lab.Layout.HostDir(source.Name), "agent.log")), Does.Contain("found a committed migration"));
        AssertRunsOnlyOn(destination);
    }

    /// <summary>
    /// The warm-up (migrate --warm-up): the source agent dies while it sends pages before the
    /// pause. Nothing was paused: the migration rolls back, the VM goes on where it was, and the
    /// destination's held pages go with its copy.
    /// </summary>
    [Test]
    public async Task SourceAgentKilledDuringTheWarmUpRollsBack()
    {
        var source = _on;
        string log = Path.Combine(_lab.Layout.HostDir(source.Name), "agent.log");
        long from = new FileInfo(log).Length;
        bool seen = false;
        var killer = Task.Run(async () =>
        {
            var deadline = DateTime.UtcNow.AddSeconds(90);
            while (!(seen = LogSince(log, from).Contains("warm-up: tracking")) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }

            await Task.Delay(500);
            Kill9(AgentOf(source));
            await Task.Delay(2000);
            _lab.StartAgent(source, MigrationLab.AgentLaunch);
        });
        var report = await new GuideCopyMigration(Hop() with { WarmUp = TimeSpan.FromSeconds(30) }).RunAsync(CancellationToken.None);
        await killer;
        Assert.That(seen, Is.True, "the warm-up never started: " + LogSince(log, from));
        Assert.That(report.Outcome, Is.AnyOf(MigrationOutcome.Refused, MigrationOutcome.RolledBack), report.Error);
        AssertRunsOnlyOn(source, TimeSpan.FromSeconds(30));
    }

    /// <summary>
    /// After a warm-up, the source agent dies mid-transfer, before or after its verdict went: the
    /// restarted agent cannot know which warm pages were written since and declares them all stale
    /// (journal WarmedUp), so the destination uses none unchecked; the guest's checksums say so.
    /// </summary>
    [Test]
    public async Task SourceAgentKilledMidTransferAfterAWarmUpCompletes()
    {
        var source = _on;
        var destination = Other;
        var report = await new GuideCopyMigration(Hop(afterCommit: async () =>
        {
            Kill9(AgentOf(source));
            await Task.Delay(2000);
            _lab.StartAgent(source, MigrationLab.AgentLaunch);
        }) with { WarmUp = TimeSpan.FromSeconds(8) }).RunAsync(CancellationToken.None);
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
        Assert.That(report.WarmUp?.Skipped, Is.Null, "the warm-up ran");
        Assert.That(report.WarmUp!.PagesSent, Is.GreaterThan(0));
        Assert.That(File.ReadAllText(Path.Combine(_lab.Layout.HostDir(source.Name), "agent.log")), Does.Contain("every page of its warm-up declared stale"));
        Assert.That(report.Pages!.Accounted, Is.EqualTo(report.Pages.Total), report.Pages.ToString());
        Assert.That(report.Guest?.ChecksOk, Is.True);
        AssertRunsOnlyOn(destination);
    }

    /// <summary>The agent log from byte <paramref name="from"/> on (the whole log if it was started anew).</summary>
    private static string LogSince(string log, long from)
    {
        using var s = new FileStream(log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        if (s.Length >= from) s.Seek(from, SeekOrigin.Begin);
        return new StreamReader(s).ReadToEnd();
    }

    [Test]
    public async Task SourceAgentStoppedWithSigtermMidTransferAndStartedAgain()
    {
        var source = _on;
        var destination = Other;
        var report = await new GuideCopyMigration(Hop(afterCommit: async () =>
        {
            await Task.Delay(1000);
            int pid = AgentOf(source);
            CommandRunner.Check("kill", "-TERM", pid.ToString());
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (LabRig.AgentPid(source) is not null && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }

            _lab.StartAgent(source, MigrationLab.AgentLaunch);
        })).RunAsync(CancellationToken.None);
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
        AssertRunsOnlyOn(destination);
    }

    [Test]
    public async Task SourceQemuKilledMidTransferTheVmGoesOn()
    {
        var source = _on;
        var destination = Other;
        var report = await new GuideCopyMigration(Hop(afterCommit: async () =>
        {
            await Task.Delay(1000);
            string pid = File.ReadAllText($"{source.RootPath}/run/libvirt/qemu/{Domain}.pid").Trim();
            Kill9(int.Parse(pid));
        })).RunAsync(CancellationToken.None);
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
        AssertRunsOnlyOn(destination);
    }

    /// <summary>The link down a second after the commit, for less and for more than the lanes' timeouts: the VM stalls, then completes.</summary>
    [TestCase(5)]
    [TestCase(30)]
    public async Task LinkCutMidTransferCompletes(int seconds)
    {
        var destination = Other;
        var report = await new GuideCopyMigration(Hop(afterCommit: async () =>
        {
            await Task.Delay(1000);
            _lab.SetLink(up: false);
            await Task.Delay(TimeSpan.FromSeconds(seconds));
            _lab.SetLink(up: true);
        })).RunAsync(CancellationToken.None);
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
        AssertRunsOnlyOn(destination);
    }

    [Test]
    public async Task SourceAgentKilledWhilePausedRollsBackWhenItRestarts()
    {
        var source = _on;
        var report = await new GuideCopyMigration(Hop(beforeCommit: async () =>
        {
            Kill9(AgentOf(source));
            await Task.Delay(2000);
            _lab.StartAgent(source, MigrationLab.AgentLaunch);
        })).RunAsync(CancellationToken.None);
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.RolledBack), report.Error);
        Assert.That(File.ReadAllText(Path.Combine(_lab.Layout.HostDir(source.Name), "agent.log")), Does.Contain("was not committed: rolling back"));
        AssertRunsOnlyOn(source, TimeSpan.FromSeconds(30));
    }

    [Test]
    public void ControllerKilledMidTransferTheAgentsFinish()
    {
        var destination = Other;
        using var cli = StartCli("migrate", Domain, "--from", $"lab:{Name}/{_on.Name}", "--to", $"lab:{Name}/{destination.Name}", "--bandwidth", "8MB/s", "--json");
        string id = WaitForStage(destination, MigrationStage.Committed, TimeSpan.FromSeconds(120));
        Thread.Sleep(1000);
        Kill9(cli.Id);
        cli.WaitForExit();
        AssertRunsOnlyOn(destination);
        Assert.That(CommandRunner.Check("virsh", "-c", destination.LibvirtUri, "dominfo", Domain), Does.Match(@"Persistent:\s+yes"));
        // Any controller can still follow it: the agents kept its report.
        var job = CliProcess.Run("job", id, "--host", $"lab:{Name}/{destination.Name}", "--json");
        Assert.That(job.ExitCode, Is.Zero, job.StdErr);
        Assert.That(job.StdOut, Does.Contain("\"stage\": \"Completed\""));
    }

    [Test]
    public void ControllerKilledBeforeTheSwitchoverLeaseRollsBack()
    {
        var source = _on;
        var destination = Other;
        using var cli = StartCli("migrate", Domain, "--from", $"lab:{Name}/{source.Name}", "--to", $"lab:{Name}/{destination.Name}", "--guide", "off", "--json");
        string id = WaitForStage(destination, MigrationStage.DestinationPrepared, TimeSpan.FromSeconds(60));
        Kill9(cli.Id);
        cli.WaitForExit();
        // The destination agent hears no lease renewal for Agent:ControllerLeaseSeconds and removes its copy.
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (Journaled(destination, id)?.Stage is not (MigrationStage.RolledBack or null) && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(500);
        }

        Assert.That(Journaled(destination, id)?.Stage ?? MigrationStage.RolledBack, Is.EqualTo(MigrationStage.RolledBack));
        AssertRunsOnlyOn(source, TimeSpan.FromSeconds(30));
    }

    [Test]
    public void CtrlCBeforeTheCommitRollsBack()
    {
        IgnoreIfSigintCannotArrive();
        var source = _on;
        var destination = Other;
        // Held armed before the pause (GUIDECOPY_FAULT_HOLD): a signal aimed at the short window
        // between "prepared" and the pause missed it in a loaded CI run (the migration completed).
        using var cli = StartCli(new Dictionary<string, string> { ["GUIDECOPY_FAULT_HOLD"] = "before-switchover" },
            "migrate", Domain, "--from", $"lab:{Name}/{source.Name}", "--to", $"lab:{Name}/{destination.Name}", "--json");
        WaitForStage(destination, MigrationStage.DestinationPrepared, TimeSpan.FromSeconds(60));
        Thread.Sleep(3000); // the guide's start and both arms, then the hold
        CommandRunner.Check("kill", "-INT", cli.Id.ToString());
        Assert.That(cli.WaitForExit(TimeSpan.FromSeconds(120)), Is.True, "the controller did not exit after SIGINT");
        var report = JsonSerializer.Deserialize<MigrationReport>(cli.StandardOutput.ReadToEnd(), MigrationReport.Json)!;
        Assert.That(cli.ExitCode, Is.EqualTo(report.Outcome == MigrationOutcome.Refused ? 10 : 11), report.Error);
        Assert.That(report.Error, Does.Contain("interrupted"));
        AssertRunsOnlyOn(source, TimeSpan.FromSeconds(30));
    }


    [Test]
    public async Task SourceAgentKilledBeforeTheSwitchoverLeavesNoGuide()
    {
        var source = _on;
        var plan = Hop() with
        {
            Guide = new GuideOptions { Enabled = true },
            BeforeSwitchover = async () =>
            {
                Kill9(AgentOf(source));
                await Task.Delay(2000);
                _lab.StartAgent(source, MigrationLab.AgentLaunch);
            },
        };
        var report = await new GuideCopyMigration(plan).RunAsync(CancellationToken.None);
        // The switchover request died with the agent: the controller cannot know whether it
        // arrived, so it rolls back as if the source had paused (it had not).
        Assert.That(report.Outcome, Is.AnyOf(MigrationOutcome.Refused, MigrationOutcome.RolledBack), report.Error);
        // Hop() is capped: the guide's QEMU started before the pause (GuidePrepareRequest.StartBeforePause).
        Assert.That(File.ReadAllText(Path.Combine(_lab.Layout.HostDir(source.Name), "agent.log")), Does.Contain("destroyed the guide an earlier agent left running"));
        // AssertRunsOnlyOn counts QEMUs matching guest=fm-kv: the guide (fm-kv-guide) would be a second.
        AssertRunsOnlyOn(source, TimeSpan.FromSeconds(30));
    }

    [Test]
    public async Task SourceAgentKilledWhileItsGuideRunsLeavesNoGuide()
    {
        var source = _on;
        var destination = Other;
        bool guideSeen = false;
        // Killed once the guide runs: its domain exists from before the arm (started paused), and
        // an agent killed while the guide still loads its device state takes the guide with it
        // (QEMU exits on a failed incoming migration), leaving nothing for the next agent to find.
        string log = Path.Combine(_lab.Layout.HostDir(source.Name), "agent.log");
        int running = File.ReadAllText(log).Split("guide running").Length;
        var plan = Hop(afterCommit: async () =>
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (!(guideSeen = File.ReadAllText(log).Split("guide running").Length > running) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }

            Kill9(AgentOf(source));
            await Task.Delay(2000);
            _lab.StartAgent(source, MigrationLab.AgentLaunch);
        }) with { Guide = new GuideOptions { Enabled = true } };
        var report = await new GuideCopyMigration(plan).RunAsync(CancellationToken.None);
        Assert.That(guideSeen, Is.True, "the guide never ran");
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
        Assert.That(File.ReadAllText(Path.Combine(_lab.Layout.HostDir(source.Name), "agent.log")), Does.Contain("destroyed the guide an earlier agent left running"));
        AssertRunsOnlyOn(destination);
        Assert.That(source.DomainNames(), Has.None.EqualTo(Domain + "-guide"));
    }

    [Test]
    public async Task SourceAgentKilledWithTheDeviceStateSavedRollsBack()
    {
        // The switchover is done (paused, device state saved, DeviceStateSaved journaled) but
        // its reply never comes: the agent dies right there and starts again. The commit is held
        // (the destination loads, then waits for the controller), so the dead agent is the one
        // that had not decided yet: its successor rolls back, and the destination's question
        // gets "rolled back".
        var source = _on;
        RestartAgentWith(source, "Agent:DropReplyTo=source.switchover");
        var killer = Task.Run(async () =>
        {
            string log = Path.Combine(_lab.Layout.HostDir(source.Name), "agent.log");
            int seen = File.ReadAllText(log).Split("reply dropped").Length;
            var deadline = DateTime.UtcNow.AddSeconds(120);
            while (File.ReadAllText(log).Split("reply dropped").Length == seen && DateTime.UtcNow < deadline)
            {
                await Task.Delay(20);
            }

            Kill9(AgentOf(source));
            await Task.Delay(2000);
            _lab.StartAgent(source, MigrationLab.AgentLaunch);
        });
        var report = await new GuideCopyMigration(Hop(beforeCommit: () => killer)).RunAsync(CancellationToken.None);
        await killer;
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.RolledBack), report.Error);
        AssertRunsOnlyOn(source, TimeSpan.FromSeconds(30));
    }

    [Test]
    public async Task SourceAgentKilledRightAfterTheSwitchoverLeavesOneCopy()
    {
        // Unheld, the destination asks for the decision the moment its QEMU loaded, ~10 ms after
        // the save: the source agent dies around then, before or after deciding. Either way one
        // copy runs: committed, its successor serves the frozen RAM again; not, it rolls back.
        var source = _on;
        var destination = Other;
        RestartAgentWith(source, "Agent:DropReplyTo=source.switchover");
        var killer = Task.Run(async () =>
        {
            string log = Path.Combine(_lab.Layout.HostDir(source.Name), "agent.log");
            int seen = File.ReadAllText(log).Split("reply dropped").Length;
            var deadline = DateTime.UtcNow.AddSeconds(120);
            while (File.ReadAllText(log).Split("reply dropped").Length == seen && DateTime.UtcNow < deadline)
            {
                await Task.Delay(5);
            }

            Kill9(AgentOf(source));
            await Task.Delay(2000);
            _lab.StartAgent(source, MigrationLab.AgentLaunch);
        });
        var report = await new GuideCopyMigration(Hop()).RunAsync(CancellationToken.None);
        await killer;
        Assert.That(report.Outcome, Is.AnyOf(MigrationOutcome.Completed, MigrationOutcome.RolledBack, MigrationOutcome.FailedAfterCommit), report.Error);
        var committed = Journaled(source, report.Id!)?.Stage is { } st && st.IsCommitted();
        TestContext.Out.WriteLine($"outcome {report.Outcome}, source journal committed: {committed} ({report.Error})");
        AssertRunsOnlyOn(committed ? destination : source, TimeSpan.FromSeconds(60));
    }

    /// <summary>Waits until <paramref name="h"/>'s agent log has one more line containing <paramref name="text"/> than it had when this was called.</summary>
    private Task WaitForAgentLine(LabHost h, string text) => WaitForAgentLine(h, text, File.ReadAllText(AgentLog(h)).Split(text).Length);

    private async Task WaitForAgentLine(LabHost h, string text, int seen)
    {
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (File.ReadAllText(AgentLog(h)).Split(text).Length == seen && DateTime.UtcNow < deadline)
        {
            await Task.Delay(5);
        }
    }

    private string AgentLog(LabHost h) => Path.Combine(_lab.Layout.HostDir(h.Name), "agent.log");

    /// <summary>
    /// A hop whose source stalls <paramref name="stallMs"/> between journaling Committed and sending
    /// the last byte (the released commit), with <paramref name="victim"/>'s agent killed in that
    /// stall and started again 1 s later: the report, the agents restarted plainly afterwards.
    /// </summary>
    private async Task<MigrationReport> HopKillingInTheReleaseStall(LabHost victim, int stallMs, string[] destinationSettings)
    {
        var source = _on;
        var destination = Other;
        RestartAgentWith(source, $"Agent:StallBeforeReleaseMs={stallMs}");
        RestartAgentWith(destination, destinationSettings);
        try
        {
            var stalled = WaitForAgentLine(source, "Agent:StallBeforeReleaseMs");
            var killer = Task.Run(async () =>
            {
                await stalled;
                Kill9(AgentOf(victim));
                await Task.Delay(1000);
                _lab.StartAgent(victim, MigrationLab.AgentLaunch);
            });
            var report = await new GuideCopyMigration(Hop()).RunAsync(CancellationToken.None);
            await killer;
            TestContext.Out.WriteLine($"{report.Outcome}: {report.Error}");
            return report;
        }
        finally
        {
            foreach (var h in new[] { source, destination })
            {
                if (LabRig.AgentPid(h) is { } pid)
                {
                    Kill9(pid);
                }

                _lab.StartAgent(h, MigrationLab.AgentLaunch);
            }
        }
    }

    [Test]
    public async Task SourceAgentKilledBetweenItsCommitAndTheLastByteTakesTheVmBack()
    {
        // The released commit: the source journals Committed, then sends the device state's last
        // byte. Killed between the two, the destination QEMU never gets it and cannot run: the
        // destination gives its copy up when its load times out and tells the restarted source,
        // which had committed and takes the VM back.
        var source = _on;
        var destination = Other;
        var report = await HopKillingInTheReleaseStall(source, 60_000, ["Agent:DeviceStateTimeoutSeconds=8"]);
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.RolledBack), report.Error);
        Assert.That(File.ReadAllText(AgentLog(source)), Does.Contain("the destination gave up its copy before it ran"));
        Assert.That(Journaled(source, report.Id!)!.Stage, Is.EqualTo(MigrationStage.RolledBack));
        Assert.That(Journaled(destination, report.Id!)!.AbandonPending, Is.False, "the source was told");
        AssertRunsOnlyOn(source, TimeSpan.FromSeconds(60));
    }

    [Test]
    public async Task DestinationAgentKilledBeforeTheLastByteTheCommittedSourceTakesTheVmBack()
    {
        // The destination agent dies while the committed source holds the last byte: QEMU's
        // incoming socket closes with the stream one byte short, so its load fails and it never
        // runs. The restarted agent finds it gone (or removes it) and tells the source, which had
        // committed and takes the VM back.
        var source = _on;
        var destination = Other;
        var report = await HopKillingInTheReleaseStall(destination, 4000, []);
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.RolledBack), report.Error);
        Assert.That(File.ReadAllText(AgentLog(destination)), Does.Contain("whose copy never ran"));
        Assert.That(File.ReadAllText(AgentLog(source)), Does.Contain("the destination gave up its copy before it ran"));
        Assert.That(Journaled(source, report.Id!)!.Stage, Is.EqualTo(MigrationStage.RolledBack));
        AssertRunsOnlyOn(source, TimeSpan.FromSeconds(60));
    }

    [Test]
    public async Task FailedVerdictAfterTheCommitRecordTakesItBackAndRollsBack()
    {
        // The released commit journals Committed before it looks at QEMU's verdict. A verdict
        // that says "failed" (injected: a real one cannot be made to fail after a whole stream)
        // finds Committed journaled and the last byte still held: the record goes back, the
        // source resumes, the destination's copy never runs and goes.
        var source = _on;
        RestartAgentWith(source, "Agent:FailVerdict=true");
        MigrationReport report;
        try
        {
            report = await new GuideCopyMigration(Hop()).RunAsync(CancellationToken.None);
        }
        finally
        {
            if (LabRig.AgentPid(source) is { } pid)
            {
                Kill9(pid);
            }

            _lab.StartAgent(source, MigrationLab.AgentLaunch);
        }

        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.RolledBack), report.Error);
        Assert.That(report.Error, Does.Contain("Agent:FailVerdict"));
        string log = File.ReadAllText(AgentLog(source));
        Assert.That(log, Does.Contain($"migration={report.Id} role=source domain={Domain} stage=Committed"), "the record was written beside the verdict");
        Assert.That(log, Does.Contain("the Committed record taken back before the last byte went"));
        Assert.That(Journaled(source, report.Id!)!.Stage, Is.EqualTo(MigrationStage.RolledBack));
        AssertRunsOnlyOn(source, TimeSpan.FromSeconds(60));
    }

    [Test]
    public void ControllerKilledBetweenLoadAndResumeTheLeaseRollsBack()
    {
        var source = _on;
        var destination = Other;
        using var cli = StartCli(new Dictionary<string, string> { ["GUIDECOPY_FAULT_HOLD"] = "before-commit" },
            "migrate", Domain, "--from", $"lab:{Name}/{source.Name}", "--to", $"lab:{Name}/{destination.Name}", "--json");
        string id = WaitForStage(destination, MigrationStage.DestinationLoaded, TimeSpan.FromSeconds(120));
        Thread.Sleep(500);
        Kill9(cli.Id);
        cli.WaitForExit();
        // Paused on the source, loaded on the destination, nobody to commit or undo it: the leases run out.
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while ((Journaled(source, id)?.Stage != MigrationStage.RolledBack || Journaled(destination, id)?.Stage != MigrationStage.RolledBack) && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(500);
        }

        Assert.That(Journaled(source, id)!.Stage, Is.EqualTo(MigrationStage.RolledBack));
        Assert.That(Journaled(destination, id)!.Stage, Is.EqualTo(MigrationStage.RolledBack));
        AssertRunsOnlyOn(source, TimeSpan.FromSeconds(30));
    }


    [Test]
    public void CtrlCMidTransferDetachesAndTheAgentsFinish()
    {
        IgnoreIfSigintCannotArrive();
        var destination = Other;
        using var cli = StartCli("migrate", Domain, "--from", $"lab:{Name}/{_on.Name}", "--to", $"lab:{Name}/{destination.Name}", "--bandwidth", "8MB/s", "--json");
        WaitForStage(destination, MigrationStage.Committed, TimeSpan.FromSeconds(120));
        CommandRunner.Check("kill", "-INT", cli.Id.ToString());
        Assert.That(cli.WaitForExit(TimeSpan.FromSeconds(60)), Is.True, "the controller did not exit after SIGINT");
        var report = JsonSerializer.Deserialize<MigrationReport>(cli.StandardOutput.ReadToEnd(), MigrationReport.Json)!;
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Detached), report.Error);
        Assert.That(cli.ExitCode, Is.EqualTo(13));
        Assert.That(report.Error, Does.Contain($"guidecopy job {report.Id}"));
        AssertRunsOnlyOn(destination);
    }

    private readonly List<int> _clis = [];

    private Process StartCli(params string[] args) => StartCli(new Dictionary<string, string>(), args);

    private Process StartCli(Dictionary<string, string> env, params string[] args)
    {
        var cli = CliProcess.Start(env, args);
        _clis.Add(cli.Id);
        return cli;
    }

    /// <summary>Waits until the host journals a migration of the guest at <paramref name="stage"/> or later; returns its id.</summary>
    private string WaitForStage(LabHost host, MigrationStage stage, TimeSpan timeout)
    {
        var journal = new MigrationJournal(_lab.JournalDir(host));
        var deadline = DateTime.UtcNow + timeout;
        var known = journal.ReadAll().Select(e => e.Id).ToHashSet();
        while (DateTime.UtcNow < deadline)
        {
            var e = journal.ReadAll().FirstOrDefault(e => e.Domain == Domain && !known.Contains(e.Id) && e.Stage >= stage);
            if (e is not null)
            {
                return e.Id;
            }

            Thread.Sleep(50);
        }

        throw new TimeoutException($"no migration of {Domain} reached {stage} on {host.Name} within {timeout.TotalSeconds:0} s");
    }
}
