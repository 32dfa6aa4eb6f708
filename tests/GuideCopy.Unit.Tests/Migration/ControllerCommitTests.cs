using GuideCopy.MemoryPlane;
using GuideCopy.Transport;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Controller;
using GuideCopy.Migration.Journal;
using GuideCopy.Migration.Report;

namespace GuideCopy.Unit.Tests.Migration;

/// <summary>
/// The controller's commit and rollback rules, step by step, against fake agents that keep
/// their own stage the way the real ones journal it (no lab: the same paths run for real in
/// FaultMatrixTests). The one decision is the source's; the controller never infers it.
/// </summary>
[TestFixture]
public sealed class ControllerCommitTests
{
    /// <summary>Both hosts of one migration, with the decision at the source as the real agents keep it.</summary>
    private sealed class FakeHosts : IAgentConnector
    {
        public readonly List<string> Calls = [];
        public MigrationStage SourceStage = MigrationStage.Preflight;
        public MigrationStage DestinationStage = MigrationStage.Preflight;
        public Func<int, Exception?> ResumeFault = _ => null;
        public bool DestinationUnreachableAfterResume;
        public int Resumes;
        /// <summary>The device state reaching the destination: completed by the source's switchover.</summary>
        public readonly TaskCompletionSource DeviceStateSent = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<ISourceAgent> ConnectSourceAsync(CancellationToken ct) => Task.FromResult<ISourceAgent>(new Source(this));

        public Task<IDestinationAgent> ConnectDestinationAsync(CancellationToken ct) =>
            DestinationUnreachableAfterResume && Resumes > 0
                ? throw new AgentException("agent unreachable", connectionLost: true)
                : Task.FromResult<IDestinationAgent>(new Destination(this));

        /// <summary>What the source answers to the destination's question (SourceSide.DecideCommit).</summary>
        public bool Decide()
        {
            if (SourceStage == MigrationStage.DeviceStateSaved)
            {
                SourceStage = MigrationStage.Committed;
            }

            return SourceStage.IsCommitted();
        }

        private abstract class Host(FakeHosts h) : IHostAgent
        {
            protected FakeHosts H => h;

            public Task<HostFacts> FactsAsync(CancellationToken ct) => Task.FromResult(new HostFacts(
                GetType().Name, "1", "QEMU emulator version 10.0.2", 11003000, "/dev/shm/libvirt-ram", "tmpfs", 1L << 34, true, "/shim.so", true, GetType().Name));

            public Task LeaseAsync(MigrationRequest req, CancellationToken ct) => Task.CompletedTask;

            public Task<JobsResult> JobsAsync(CancellationToken ct) => Task.FromResult(new JobsResult("", []));

            public Task<AbortResult> AbortAsync(AbortRequest req, CancellationToken ct) => Task.FromResult(new AbortResult(true, ""));
        }

        private sealed class Source(FakeHosts h) : Host(h), ISourceAgent
        {
            public Task<SourcePrepareResult> PrepareSourceAsync(DomainRequest req, CancellationToken ct) => Task.FromResult(new SourcePrepareResult(
                "vm", "00000000-0000-0000-0000-000000000001", "<domain type='qemu'><name>vm</name><memory unit='KiB'>262144</memory></domain>",
                "", false, "/dev/shm/libvirt-ram/pc.ram", 256 << 20, "tmpfs", []));

            public Task PrepareGuideAsync(GuidePrepareRequest req, CancellationToken ct) => Task.CompletedTask;

            public Task<SourceArmResult> ArmSourceAsync(SourceArmRequest req, CancellationToken ct) =>
                Task.FromResult(new SourceArmResult("10.0.0.1:7171", 7, 65536, "aegis-256", 1));

            public Task<WarmUpResult> WarmUpAsync(WarmUpRequest req, CancellationToken ct) =>
                Task.FromResult(new WarmUpResult("not in this test", 0, 0, 0, 0, 0, 0, 0, ""));

            public Task<SwitchoverResult> SwitchoverAsync(SwitchoverRequest req, CancellationToken ct)
            {
                H.Calls.Add("source.switchover");
                H.SourceStage = MigrationStage.DeviceStateSaved;
                H.DeviceStateSent.TrySetResult();
                return Task.FromResult(new SwitchoverResult(0, 65536, 1000, 1, 1, 1));
            }

            public Task<SourceFinishResult> FinishSourceAsync(MigrationRequest req, CancellationToken ct) =>
                Task.FromResult(new SourceFinishResult(new PageServerCounters { BytesOnWire = 123 }));

            public Task AbortSourceAsync(MigrationRequest req, CancellationToken ct)
            {
                H.Calls.Add("source.abort");
                if (H.SourceStage.IsCommitted())
                {
                    throw new AgentException($"migration {req.MigrationId} is committed: the source will not resume");
                }

                H.SourceStage = MigrationStage.RolledBack;
                return Task.CompletedTask;
            }
        }

        private sealed class Destination(FakeHosts h) : Host(h), IDestinationAgent
        {
            public Task<DestinationCheckResult> CheckDestinationAsync(DestinationCheckRequest req, CancellationToken ct) => Task.FromResult(new DestinationCheckResult([]));

            public Task<DestinationStartResult> PrepareDestinationAsync(DestinationPrepareRequest req, CancellationToken ct)
            {
                H.DestinationStage = MigrationStage.DestinationPrepared;
                return Task.FromResult(new DestinationStartResult(1, 0, 1));
            }

            public Task<DestinationArmResult> ArmDestinationAsync(DestinationArmRequest req, CancellationToken ct) =>
                Task.FromResult(new DestinationArmResult(1));

            /// <summary>As the agent: waits for the device state, loads, and (unless held) takes the commit point itself.</summary>
            public async Task<DestinationStartResult> LoadAsync(DestinationLoadRequest req, CancellationToken ct)
            {
                await H.DeviceStateSent.Task.WaitAsync(ct);
                H.DestinationStage = MigrationStage.DestinationLoaded;
                if (!req.CommitWhenLoaded)
                {
                    return new DestinationStartResult(0, 1, 1);
                }

                var resumed = await ResumeAsync(new MigrationRequest(req.MigrationId), ct);
                return new DestinationStartResult(0, 1, 1, 1, 1, resumed.ResumedAtUnixMs);
            }

            public Task<ResumeResult> ResumeAsync(MigrationRequest req, CancellationToken ct)
            {
                H.Calls.Add("dest.resume");
                int n = H.Resumes++;
                // The destination journals Committing, asks the source, and resumes on its word.
                H.DestinationStage = MigrationStage.Committing;
                H.DestinationStage = H.Decide() ? MigrationStage.Committed : MigrationStage.RolledBack;
                if (H.ResumeFault(n) is { } fault)
                {
                    throw fault; // the reply is lost after the destination acted
                }

                return H.DestinationStage == MigrationStage.Committed
                    ? Task.FromResult(new ResumeResult(1100))
                    : throw new AgentException("the source rolled back");
            }

            public Task<DestinationStatus> StatusAsync(MigrationRequest req, CancellationToken ct)
            {
                H.Calls.Add("dest.status");
                if (H.DestinationUnreachableAfterResume && H.Resumes > 0)
                {
                    throw new AgentException("lost the agent during 'dest.status'", connectionLost: true);
                }

                bool committed = H.DestinationStage.IsCommitted();
                if (committed)
                {
                    H.DestinationStage = MigrationStage.Completed; // every page in on the next look
                }

                return Task.FromResult(new DestinationStatus(H.DestinationStage == MigrationStage.Completed, H.DestinationStage.ToString(),
                    new PagerCounters { Outcome = InstallOutcome.Completed, PageCount = 65536, DonePages = 65536 }, null, committed ? 1100 : 0));
            }

            public Task<DestinationStatus> FinishDestinationAsync(DestinationFinishRequest req, CancellationToken ct) => StatusAsync(new(req.MigrationId), ct);

            public Task AbortDestinationAsync(AbortRequest req, CancellationToken ct)
            {
                H.Calls.Add("dest.abort");
                if (H.DestinationStage is MigrationStage.Committed or MigrationStage.Completed)
                {
                    throw new AgentException("committed here");
                }

                H.DestinationStage = MigrationStage.RolledBack;
                return Task.CompletedTask;
            }
        }
    }

    private static MigrationPlan Plan(FakeHosts hosts, Func<Task>? beforeCommit = null)
    {
        var a = new MigrationTarget("fake:a", "test:///default", new AgentEndpoint("/nowhere-a", null, 0), "test:///default", "10.0.0.1");
        var b = new MigrationTarget("fake:b", "test:///default", new AgentEndpoint("/nowhere-b", null, 0), "test:///default", "10.0.0.2");
        return new MigrationPlan("vm", a, b, "guide", 0, [1, 2, 3], ObserveAfter: TimeSpan.Zero, Agents: hosts, BeforeCommit: beforeCommit);
    }

    [Test]
    public async Task ALostResumeReplyIsAskedOfTheDestinationNotGuessed()
    {
        var hosts = new FakeHosts { ResumeFault = n => n == 0 ? new AgentException("lost the agent during 'dest.resume'", connectionLost: true) : null };
        var report = await new GuideCopyMigration(Plan(hosts)).RunAsync(CancellationToken.None);
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
        Assert.That(hosts.Calls, Does.Not.Contain("dest.abort").And.Not.Contain("source.abort"), "a committed migration is never rolled back");
        Assert.That(report.DowntimeMs, Is.EqualTo(100), "the resume time comes from the destination's record");
    }

    [Test]
    public async Task AnInterruptedResumeIsResolvedTheSameWay()
    {
        var hosts = new FakeHosts { ResumeFault = n => n == 0 ? new OperationCanceledException() : null };
        var report = await new GuideCopyMigration(Plan(hosts)).RunAsync(CancellationToken.None);
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
        Assert.That(hosts.SourceStage, Is.EqualTo(MigrationStage.Committed));
    }

    [Test]
    public async Task AnUnreachableDestinationAfterTheResumeLetsTheSourceArbitrate()
    {
        // The destination committed, then could not be asked: the rollback asks the source,
        // which refuses (committed), and the controller follows the migration instead.
        var hosts = new FakeHosts
        {
            ResumeFault = n => n == 0 ? new AgentException("lost the agent during 'dest.resume'", connectionLost: true) : null,
            DestinationUnreachableAfterResume = true,
        };
        var run = new GuideCopyMigration(Plan(hosts) with { CommitAsk = TimeSpan.FromSeconds(1) }).RunAsync(CancellationToken.None);
        // The destination agent comes back (restarted) after the controller gave up asking it.
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!hosts.Calls.Contains("source.abort") && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        hosts.DestinationUnreachableAfterResume = false;
        var report = await run.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.That(hosts.Calls, Does.Contain("source.abort"), "the source is asked for the rollback, and refuses");
        Assert.That(hosts.Calls, Does.Not.Contain("dest.abort"), "the committed destination is never touched");
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
        Assert.That(hosts.SourceStage, Is.EqualTo(MigrationStage.Committed));
    }

    [Test]
    public async Task AFailureBeforeTheCommitRollsBackAtTheSourceFirst()
    {
        var hosts = new FakeHosts();
        var report = await new GuideCopyMigration(Plan(hosts, () => throw new InvalidOperationException("the device state did not load"))).RunAsync(CancellationToken.None);
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.RolledBack), report.Error);
        Assert.That(hosts.Calls.Where(c => c is "source.abort" or "dest.abort"), Is.EqualTo(new[] { "source.abort", "dest.abort" }),
            "the source takes the decision \"rolled back\" before the destination copy goes");
        Assert.That(hosts.Calls, Does.Not.Contain("dest.resume"));
        Assert.That(report.Error, Does.Contain("the source runs again"));
    }

    [Test]
    public async Task ARolledBackSourceMeansTheDestinationNeverResumes()
    {
        // The source rolled back (a lease ran out) before the destination asked: its answer is "rolled back".
        var hosts = new FakeHosts();
        var report = await new GuideCopyMigration(Plan(hosts, () =>
        {
            hosts.SourceStage = MigrationStage.RolledBack;
            return Task.CompletedTask;
        })).RunAsync(CancellationToken.None);
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.RolledBack), report.Error);
        Assert.That(hosts.DestinationStage, Is.EqualTo(MigrationStage.RolledBack));
    }
}
