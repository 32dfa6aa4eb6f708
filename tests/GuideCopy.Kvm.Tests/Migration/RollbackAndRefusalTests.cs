using System.Diagnostics;
using GuideCopy.Cli.GuestWatch;
using GuideCopy.Lab;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Controller;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Report;

namespace GuideCopy.Kvm.Tests.Migration;

/// <summary>
/// Failures before the commit point roll back (the source runs on, checksums OK, nothing left
/// on the destination); bad input is refused before anything is paused, with a message that
/// names the problem.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class RollbackAndRefusalTests
{
    private const string Name = "gcrb";
    private const string Domain = "rb-kv";
    private LabRig _lab = null!;
    private TestGuest _guest = null!;

    [OneTimeSetUp]
    public void Up()
    {
        _lab = MigrationLab.Up(Name);
        _guest = TestGuest.Boot(_lab, _lab.A, new TestGuestSpec(Domain, "kv", MemoryMiB: 384));
        _guest.WaitForHeartbeats(2, TimeSpan.FromSeconds(120));
    }

    [OneTimeTearDown]
    public void Down() => LabRig.Down(Name);

    [TearDown]
    public void KeepLogs() => MigrationLab.KeepAgentLogsIfFailed(_lab);

    private MigrationPlan Plan(Func<Task>? beforeCommit = null) => new(
        Domain, Target(_lab.A), Target(_lab.B), "guide", 0, SharedSecret.Read(_lab.SecretFile),
        GuestWatch: new ConsoleGuestWatch(), ObserveAfter: TimeSpan.Zero, BeforeCommit: beforeCommit);

    private static MigrationTarget Target(LabHost h) => MigrationLab.Target(h);

    private void AssertSourceRunsAndDestinationIsClean()
    {
        Assert.That(CommandRunner.Check("virsh", "-c", _lab.A.LibvirtUri, "domstate", Domain).Trim(), Is.EqualTo("running"));
        Assert.That(_lab.B.DomainNames(), Does.Not.Contain(Domain));
        // The pattern also finds the guide's QEMU (guest=NAME-guide), which goes after the
        // migration has ended (a hop back to a leaves b's guide exiting): given its 20 s to go.
        int QemusOfTheGuest() => CommandRunner.Run("pgrep", "-f", $"guest={Domain}").StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;
        MigrationLab.WaitUntil(() => QemusOfTheGuest() <= 1, DateTime.UtcNow.AddSeconds(20));

        Assert.That(QemusOfTheGuest(), Is.EqualTo(1), "exactly one QEMU of the guest (the source) must be left");
        MigrationLab.AssertHeartbeatsContinue(_guest);
    }

    [Test]
    [Category("FaultMatrix")]
    public async Task DestinationQemuKilledWhilePausedRollsBack()
    {
        var report = await new GuideCopyMigration(Plan(() =>
        {
            // The destination QEMU is paused with the device state loaded; it dies now.
            // libvirt's pid file on host b names the destination copy (host a runs the source).
            string pid = File.ReadAllText($"{_lab.B.RootPath}/run/libvirt/qemu/{Domain}.pid").Trim();
            Process.GetProcessById(int.Parse(pid)).Kill();
            return Task.Delay(500);
        })).RunAsync(CancellationToken.None);
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.RolledBack), report.Error);
        Assert.That(report.Error, Does.Contain("rolled back: the source runs again"));
        AssertSourceRunsAndDestinationIsClean();
    }

    [Test]
    [Category("FaultMatrix")]
    public async Task DestinationAgentStoppedBeforeCommitRollsBack()
    {
        try
        {
            var report = await new GuideCopyMigration(Plan(() =>
            {
                int pid = LabRig.AgentPid(_lab.B) ?? throw new InvalidOperationException("no agent on b");
                Process.GetProcessById(pid).Kill();
                return Task.Delay(300);
            })).RunAsync(CancellationToken.None);
            Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.RolledBack), report.Error);
            Assert.That(report.Error, Does.Contain("destroyed through libvirt"));
            AssertSourceRunsAndDestinationIsClean();
        }
        finally
        {
            _lab.StartAgent(_lab.B, MigrationLab.AgentLaunch);
        }
    }

    [Test]
    [Category("FaultMatrix")]
    public async Task DestinationAgentKilledAfterCommitStallsThenCompletes()
    {
        // Push capped at 40 Mbit/s so the transfer is still running when the agent dies.
        var plan = Plan() with
        {
            BandwidthBytesPerSecond = 5_000_000,
            AfterCommit = async () =>
            {
                int pid = LabRig.AgentPid(_lab.B) ?? throw new InvalidOperationException("no agent on b");
                Process.GetProcessById(pid).Kill();
                await Task.Delay(2000);
                _lab.StartAgent(_lab.B, MigrationLab.AgentLaunch);
            },
        };
        try
        {
            var report = await new GuideCopyMigration(plan).RunAsync(CancellationToken.None);
            Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
            Assert.That(File.ReadAllText(Path.Combine(_lab.Layout.HostDir("b"), "agent.log")), Does.Contain("recovered after an agent restart"));
            MigrationLab.AssertOnlyOn(_lab, Domain, _lab.B);
            MigrationLab.AssertHeartbeatsContinue(_guest);
        }
        finally
        {
            if (LabRig.AgentPid(_lab.B) is null)
            {
                _lab.StartAgent(_lab.B, MigrationLab.AgentLaunch);
            }

            // Back to a for the other tests, whatever failed above: the fixture's other cells
            // expect the guest on a, and one failed cell must not fail them too.
            await HopBackToA();
        }
    }

    private async Task HopBackToA()
    {
        if (!_lab.B.DomainNames().Contains(Domain) || _lab.A.DomainNames().Contains(Domain))
        {
            return;
        }

        var back = await new GuideCopyMigration(Plan() with { From = Target(_lab.B), To = Target(_lab.A) }).RunAsync(CancellationToken.None);
        Assert.That(back.Outcome, Is.EqualTo(MigrationOutcome.Completed), back.Error);
    }

    [Test]
    public void UnknownDomainIsRefused()
    {
        var (rc, report, err) = MigrationLab.Migrate(_lab, "no-such-vm", "a", "b");
        Assert.That(rc, Is.EqualTo(10), err);
        Assert.That(report!.Error, Does.Contain("domain 'no-such-vm' not found"));
        AssertSourceRunsAndDestinationIsClean();
    }

    [Test]
    public void RamNotASharedFileIsRefusedWithTheFix()
    {
        // A guest whose RAM is anonymous memory: guide-copy cannot take it over.
        MigrationLab.StartEdited(_lab, _lab.A, "rb-anon", 256, MigrationLab.WithAnonymousRam);
        try
        {
            var (rc, report, err) = MigrationLab.Migrate(_lab, "rb-anon", "a", "b");
            Assert.That(rc, Is.EqualTo(10), err);
            Assert.That(report!.Error, Does.Contain("needs a named RAM file").And.Contain("<source type='file'/>"));
            Assert.That(CommandRunner.Check("virsh", "-c", _lab.A.LibvirtUri, "domstate", "rb-anon").Trim(), Is.EqualTo("running"));
        }
        finally
        {
            CommandRunner.Run("virsh", "-c", _lab.A.LibvirtUri, "destroy", "rb-anon");
        }
    }

    [Test]
    public void UnreachableAgentIsRefused()
    {
        var (rc, report, err) = MigrationLab.Migrate(_lab, Domain, "a", "b", "--to-agent", "unix:/run/guidecopy-nowhere.sock");
        Assert.That(rc, Is.EqualTo(10), err);
        Assert.That(report!.Error, Does.Contain("unreachable").And.Contain("guidecopy agent"));
        AssertSourceRunsAndDestinationIsClean();
    }

    [Test]
    public void WrongSecretIsRefused()
    {
        string bad = Path.Combine(_lab.SharedDir, "wrong-secret");
        File.WriteAllText(bad, "this-is-not-the-lab-secret-at-all");
        var (rc, report, err) = MigrationLab.Migrate(_lab, Domain, "a", "b", "--secret-file", bad);
        Assert.That(rc, Is.EqualTo(10), err);
        Assert.That(report!.Error, Does.Contain("refused us: authentication failed"));
        AssertSourceRunsAndDestinationIsClean();
    }

    [Test]
    public void DestinationWithoutShimIsRefused()
    {
        string hidden = _lab.ShimLibrary + ".hidden";
        File.Move(_lab.ShimLibrary, hidden);
        try
        {
            var (rc, report, err) = MigrationLab.Migrate(_lab, Domain, "a", "b");
            Assert.That(rc, Is.EqualTo(10), err);
            Assert.That(report!.Error, Does.Contain("shim").And.Contain("is missing"));
            AssertSourceRunsAndDestinationIsClean();
        }
        finally
        {
            File.Move(hidden, _lab.ShimLibrary);
        }
    }

    [Test]
    public void CheckRunsThePreflightAloneAndChangesNothing()
    {
        var r = CliProcess.Run("check", Domain, "--from", $"lab:{Name}/a", "--to", $"lab:{Name}/b", "--json");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.StdErr + r.StdOut);
        using var doc = System.Text.Json.JsonDocument.Parse(r.StdOut);
        Assert.That(doc.RootElement.GetProperty("ok").GetBoolean(), Is.True);
        Assert.That(doc.RootElement.GetProperty("problems").GetArrayLength(), Is.Zero);
        AssertSourceRunsAndDestinationIsClean();
    }

    [Test]
    public void CheckRefusesWithEachProblemInTheArray()
    {
        // Source and destination the same host: a real preflight problem, named with its fix.
        var r = CliProcess.Run("check", Domain, "--from", $"lab:{Name}/a", "--to", $"lab:{Name}/a", "--json");
        Assert.That(r.ExitCode, Is.EqualTo(10), r.StdErr + r.StdOut);
        using var doc = System.Text.Json.JsonDocument.Parse(r.StdOut);
        var problems = doc.RootElement.GetProperty("problems").EnumerateArray().Select(e => e.GetString()).ToList();
        Assert.That(problems, Has.Some.Contains("the same host").And.Some.Contains("pick another destination"));
        r = CliProcess.Run("check", "no-such-vm", "--from", $"lab:{Name}/a", "--to", $"lab:{Name}/b");
        Assert.That(r.ExitCode, Is.EqualTo(10), r.StdErr + r.StdOut);
        Assert.That(r.StdOut, Does.Contain("domain 'no-such-vm' not found"));
        AssertSourceRunsAndDestinationIsClean();
    }

    [Test]
    public void APauseLongerThanMaxDowntimeRollsBackBeforeTheCommit()
    {
        // 1 ms: under TCG the device state alone takes longer to load, so the limit is passed
        // every time, and the destination must refuse the commit rather than resume late.
        var (rc, report, err) = MigrationLab.Migrate(_lab, Domain, "a", "b", "--max-downtime", "1");
        Assert.That(rc, Is.EqualTo(11), err);
        Assert.That(report!.Outcome, Is.EqualTo(MigrationOutcome.RolledBack));
        Assert.That(report.Error, Does.Contain("over --max-downtime 1 ms").And.Contain("the source runs again"));
        AssertSourceRunsAndDestinationIsClean();
        AssertNoWorkLeft();
    }

    [Test]
    public void ATimeoutBeforeTheCommitPointRollsBack()
    {
        // Preflight and the destination's start take more than 0.3 s: the deadline falls before
        // the pause, so nothing was paused (exit 10, as a refusal) and the destination is cleaned.
        var (rc, report, err) = MigrationLab.Migrate(_lab, Domain, "a", "b", "--timeout", "0.3");
        Assert.That(rc, Is.EqualTo(10), err);
        Assert.That(report!.Error, Does.Contain("not reached within --timeout 0.3 s"));
        AssertSourceRunsAndDestinationIsClean();
        AssertNoWorkLeft();
    }

    [Test]
    public void KeepSourceDefinitionLeavesItShutOffOnTheSource()
    {
        var (rc, report, err) = MigrationLab.Migrate(_lab, Domain, "a", "b", "--keep-source-definition", "--observe", "0");
        try
        {
            Assert.That(rc, Is.EqualTo(0), err);
            Assert.That(report!.Outcome, Is.EqualTo(MigrationOutcome.Completed));
            Assert.That(CommandRunner.Check("virsh", "-c", _lab.B.LibvirtUri, "domstate", Domain).Trim(), Is.EqualTo("running"));
            Assert.That(CommandRunner.Check("virsh", "-c", _lab.A.LibvirtUri, "domstate", Domain).Trim(), Is.EqualTo("shut off"));
            AssertNoWorkLeft(); // the guide's QEMU (guest=NAME-guide) is gone once the work dir is
            Assert.That(CommandRunner.Run("pgrep", "-f", $"guest={Domain}").StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(1),
                "exactly one QEMU of the guest");
        }
        finally
        {
            // Back to a for the other tests, as a user would: the kept definition goes first.
            CommandRunner.Run("virsh", "-c", _lab.A.LibvirtUri, "undefine", Domain);
            if (_lab.B.DomainNames().Contains(Domain))
            {
                var (back, _, backErr) = MigrationLab.Migrate(_lab, Domain, "b", "a", "--observe", "0");
                Assert.That(back, Is.EqualTo(0), backErr);
            }
        }

        AssertSourceRunsAndDestinationIsClean();
    }

    private void AssertNoWorkLeft() => MigrationLab.AssertNoWorkLeft(_lab);

    [Test]
    public void PrometheusScrapesTheAgentsDuringAndAfterAMigration()
    {
        // What a monitoring system sees: the destination agent's /metrics on its link address,
        // a migration active while it runs, then its outcome, pages by route and bytes.
        string url = $"http://{_lab.B.Address}:{AgentOptions.DefaultMetricsPort}/metrics";
        string scrapedBefore = _lab.B.Run("curl", "-sf", url).StdOut;
        double before = Sample(scrapedBefore, "guidecopy_migrations", "role=\"destination\"", "outcome=\"completed\"");
        double MovedPages(string scrape) => new[] { "demand", "push", "locality", "background" }.Sum(r => Sample(scrape, "guidecopy_pages", $"route=\"{r}\""));
        double movedBefore = MovedPages(scrapedBefore);
        var cli = new System.Diagnostics.Process
        {
            StartInfo = new("dotnet", [CliProcess.DllPath, "migrate", Domain, "--from", $"lab:{Name}/a", "--to", $"lab:{Name}/b", "--bandwidth", "8MB/s", "--json", "--observe", "0"])
            {
                RedirectStandardOutput = true, RedirectStandardError = true,
            },
        };
        cli.Start();
        var stdout = cli.StandardOutput.ReadToEndAsync();
        var stderr = cli.StandardError.ReadToEndAsync();
        double activeSeen = 0;
        while (!cli.HasExited)
        {
            var scrape = _lab.B.Run("curl", "-sf", url);
            if (scrape.ExitCode == 0)
            {
                activeSeen = Math.Max(activeSeen, Sample(scrape.StdOut, "guidecopy_migrations_active"));
            }

            Thread.Sleep(300);
        }

        cli.WaitForExit();
        try
        {
            Assert.That(cli.ExitCode, Is.EqualTo(0), stderr.Result + stdout.Result);
            var report = System.Text.Json.JsonSerializer.Deserialize<MigrationReport>(stdout.Result, MigrationReport.Json)!;
            Assert.That(activeSeen, Is.EqualTo(1), "the destination's scrape during the migration shows it active");
            string after = _lab.B.Check("curl", "-sf", url);
            TestContext.Out.WriteLine(string.Join('\n', after.Split('\n').Where(l => l.Contains("guidecopy_", StringComparison.Ordinal) && !l.StartsWith('#'))));
            Assert.That(Sample(after, "guidecopy_migrations", "role=\"destination\"", "outcome=\"completed\"") - before, Is.EqualTo(1), after);
            Assert.That(Sample(after, "guidecopy_migrations_active"), Is.Zero);
            // Pages by route, each route exposed, adding up to what the report says moved (the
            // guide's share, route "push", may be 0: outrun by the destination, which it says).
            Assert.That(after, Does.Contain("guidecopy_pages{route=\"push\"}"));
            var pages = report.Pages!;
            Assert.That(MovedPages(after) - movedBefore, Is.EqualTo(pages.Demand + pages.Guide + pages.Locality + pages.Background), after);
            Assert.That(Sample(after, "guidecopy_received_bytes"), Is.GreaterThanOrEqualTo(report.BytesOnWire > 0 ? 1 : 0));
            Assert.That(after, Does.Contain("guidecopy_downtime_ms"));
            // The agent's log: one key=value line per journal stage, with the migration id.
            string log = File.ReadAllText(Path.Combine(_lab.Layout.HostDir("b"), "agent.log"));
            Assert.That(log, Does.Contain($"migration={report.Id} role=destination domain={Domain} stage=Committed")
                .And.Contain($"migration={report.Id} role=destination domain={Domain} stage=Completed"));
            // Only on the link's address: not on the host's loopback.
            Assert.That(_lab.B.Run("curl", "-sf", $"http://127.0.0.1:{AgentOptions.DefaultMetricsPort}/metrics").ExitCode, Is.Not.Zero);
        }
        finally
        {
            if (_lab.B.DomainNames().Contains(Domain))
            {
                var (back, _, backErr) = MigrationLab.Migrate(_lab, Domain, "b", "a", "--observe", "0");
                Assert.That(back, Is.EqualTo(0), backErr);
            }
        }
    }

    /// <summary>The sum of a metric's samples whose labels hold every one given (Prometheus text format; counters may carry _total).</summary>
    private static double Sample(string scrape, string metric, params string[] labels)
    {
        double sum = 0;
        foreach (string line in scrape.Split('\n'))
        {
            if (line.StartsWith('#'))
            {
                continue;
            }

            var m = System.Text.RegularExpressions.Regex.Match(line, $@"^{metric}(_total)?(\{{(?<labels>[^}}]*)\}})? (?<value>\S+)$");
            if (m.Success && labels.All(l => m.Groups["labels"].Value.Contains(l, StringComparison.Ordinal)))
            {
                sum += double.Parse(m.Groups["value"].Value, System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return sum;
    }
}
