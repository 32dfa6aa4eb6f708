using System.Diagnostics;
using GuideCopy.Guest;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Definitions;
using GuideCopy.Migration.Report;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// The controller's state machine for our own mode (ARCHITECTURE.md "The migration, step by
/// step"): preflight on both hosts, switchover (suspend + device state), destination start with
/// the pager, resume (the commit point), transfer until every page is in, completion. Before the
/// commit point every failure rolls back (source resumed, destination cleaned); after it the
/// source is never resumed.
/// </summary>
public sealed class GuideCopyMigration
{
    private readonly MigrationPlan _plan;
    private readonly Action<MigrationProgress>? _progress;
    private readonly Dictionary<string, double> _phases = [];
    private readonly Stopwatch _clock = new();

    public GuideCopyMigration(MigrationPlan plan, Action<MigrationProgress>? progress = null)
    {
        _plan = plan;
        _progress = progress;
    }

    public async Task<MigrationReport> RunAsync(CancellationToken ct)
    {
        var startedAt = DateTimeOffset.UtcNow;
        _clock.Start();
        string id = $"{_plan.Domain}-{Guid.NewGuid().ToString("N")[..8]}";
        ControlChannel? src = null, dst = null;
        SourcePrepareResult? prepared = null;
        HeartbeatFollower? follower = null;
        IReadOnlyList<Heartbeat> history = [];
        DateTime switchoverAt = default;
        bool committed = false, pausing = false, destinationStarted = false, guidePrepared = false;
        SwitchoverResult? switched = null;
        ResumeResult? resumed = null;
        try
        {
            // 1. Preflight: nothing is paused until every check passed.
            Report("preflight");
            src = await ControlChannel.ConnectAsync(_plan.From.Agent, _plan.Secret, ct);
            dst = await ControlChannel.ConnectAsync(_plan.To.Agent, _plan.Secret, ct);
            _dst = dst;
            prepared = await src.CallAsync<SourcePrepareResult>("source.prepare", new DomainRequest(_plan.Domain), ct);
            _sourceUuid = prepared.Uuid;
            var srcFacts = await src.CallAsync<HostFacts>("facts", new Empty(), ct);
            var dstFacts = await dst.CallAsync<HostFacts>("facts", new Empty(), ct);
            var def = DomainDefinition.Parse(prepared.MigratableXml);
            var check = await dst.CallAsync<DestinationCheckResult>("dest.check",
                new DestinationCheckRequest(def.Name, def.Disks.Select(d => d.Source).OfType<string>().ToList(), prepared.RamBytes), ct);
            var problems = prepared.Problems.Concat(Preflight.Compare(srcFacts, dstFacts, prepared)).Concat(check.Problems).ToList();
            if (problems.Count > 0)
            {
                return Finish(MigrationOutcome.Refused, string.Join("\n", problems), startedAt);
            }

            Phase("preflight");

            // The guest's console, when the controller can read it (lab guests), for throughput.
            string? console = _plan.ConsoleFile ?? def.ConsoleFile;
            if (console is not null && File.Exists(console))
            {
                follower = new GuestConsole(console).Follow();
                await WaitForAHeartbeat(follower, ct);
                history = new GuestConsole(console).ReadAll();
            }

            // 3a. Destination QEMU started paused with the shim, while the source still runs.
            Report("destination start");
            destinationStarted = true;
            var startDestination = dst.CallAsync<DestinationStartResult>("dest.prepare", new DestinationPrepareRequest(id, prepared.MigratableXml), ct);
            if (_plan.Guide is { Enabled: true })
            {
                // The guide's QEMU starts beside the destination's; a guide that fails to start
                // is not fatal: the migration goes on as --guide off.
                try
                {
                    await src.CallAsync<Empty>("source.guide.prepare", new GuidePrepareRequest(id, _plan.Domain), ct);
                    guidePrepared = true;
                }
                catch (AgentException e)
                {
                    _guideFailure = $"guide did not start: {e.Message}";
                }
            }

            var started = await startDestination;
            _phases["destinationStart"] = Math.Round(started.StartMs, 1);
            Phase("destinationPrepare");

            // 2. Switchover: downtime starts on the source.
            Report("switchover");
            switchoverAt = DateTime.UtcNow;
            pausing = true;
            switched = await src.CallAsync<SwitchoverResult>("source.switchover",
                new SwitchoverRequest(id, _plan.Domain, _plan.BandwidthBytesPerSecond, _plan.Push, guidePrepared ? _plan.Guide : null), ct);
            _phases["deviceStateSave"] = Math.Round(switched.DeviceStateSaveMs, 1);

            // 3b. The pager takes the uffd against the page server; the device state loads.
            var loaded = await dst.CallAsync<DestinationStartResult>("dest.load",
                new DestinationLoadRequest(id, switched.DeviceState, switched.PageServer), ct);
            _phases["deviceStateLoad"] = Math.Round(loaded.LoadMs, 1);

            if (_plan.BeforeCommit is { } hook)
            {
                await hook();
            }

            // The commit point.
            resumed = await dst.CallAsync<ResumeResult>("dest.resume", new MigrationRequest(id), ct);
            committed = true;
            Phase("switchover");
            if (_plan.AfterCommit is { } afterCommit)
            {
                await afterCommit();
            }
        }
        catch (Exception e) when (!committed)
        {
            // Whatever failed before the commit point (an agent, libvirt, a bug of ours), the
            // source must run again and the destination copy must go.
            follower?.Dispose();
            if (!pausing)
            {
                // Preflight failed, an agent was unreachable, or the destination could not start: nothing was paused.
                if (destinationStarted || guidePrepared)
                {
                    await Rollback(guidePrepared ? src : null, dst, id);
                }

                await DisposeAll(src, dst);
                return Finish(MigrationOutcome.Refused, e.Message, startedAt);
            }

            string rollback = await Rollback(src, dst, id);
            await DisposeAll(src, dst);
            return Finish(MigrationOutcome.RolledBack, e.Message + rollback, startedAt);
        }

        // 5. Transfer: the pager pulls demand pages and takes the push until every page is in.
        DestinationStatus status;
        try
        {
            status = await WaitForCompletion(id, ct);
            Phase("transfer");
            var finished = await CallDestination<DestinationStatus>("dest.finish",
                new DestinationFinishRequest(id, prepared!.Persistent ? prepared.PersistentXml : null), ct);
            dst = _dst;
            status = finished;
            var served = await src!.CallAsync<SourceFinishResult>("source.finish", new MigrationRequest(id), ct);
            Phase("completion");
            var completedAt = DateTime.UtcNow;
            double totalSeconds = Math.Round(_clock.Elapsed.TotalSeconds, 3);
            if (follower is not null)
            {
                await ThroughputWindows.ObserveAsync(switchoverAt, completedAt, _plan.ObserveAfter, ct);
            }

            GuestThroughput? guest = follower is null ? null : ThroughputWindows.Compute(history, follower.Snapshot(), switchoverAt, completedAt);
            follower?.Dispose();
            await DisposeAll(src, dst);
            long downtime = resumed!.ResumedAtUnixMs - switched!.SuspendedAtUnixMs;
            return new MigrationReport
            {
                Mode = _plan.Mode,
                Domain = _plan.Domain,
                Source = _plan.From.Name,
                Destination = _plan.To.Name,
                Outcome = MigrationOutcome.Completed,
                StartedAt = startedAt,
                TotalSeconds = totalSeconds,
                DowntimeMs = downtime,
                BytesOnWire = served.BytesOnWire + switched.DeviceStateBytes,
                DeviceStateBytes = switched.DeviceStateBytes,
                Pages = new PageCounts(status.PageCount, status.DemandPages, status.PushPages, status.LocalityPages,
                    status.BackgroundPages, switched.ZeroPages, status.DuplicatePages),
                DestinationFaults = new FaultStats(status.Faults, status.StallCount, R(status.StallP50Ms), R(status.StallP99Ms),
                    R(status.StallMaxMs), R(status.StallTotalMs)),
                Guest = guest,
                Guide = GuideSummary(served),
                PhasesMs = _phases,
            };
        }
        catch (Exception e)
        {
            // After the commit point the destination is the VM: never resume the source.
            follower?.Dispose();
            await DisposeAll(src, dst == _dst ? dst : _dst);
            return Finish(MigrationOutcome.FailedAfterCommit,
                $"{e.Message} (after the commit point: the VM runs on {_plan.To.Name}; the source copy stays paused as a backup of unsent pages)",
                DateTimeOffset.UtcNow);
        }
    }

    private async Task<DestinationStatus> WaitForCompletion(string id, CancellationToken ct)
    {
        while (true)
        {
            var s = await CallDestination<DestinationStatus>("dest.status", new MigrationRequest(id), ct);
            _progress?.Invoke(new MigrationProgress("transfer", s.DonePages, s.PageCount, s.Faults, s.BytesReceived, _clock.Elapsed.TotalSeconds));
            if (s.Done)
            {
                if (s.Outcome is not null && s.Outcome != "Completed")
                {
                    throw new AgentException($"destination pager ended with {s.Outcome}");
                }

                return s;
            }

            await Task.Delay(250, ct);
        }
    }

    /// <summary>After the commit point the destination agent may restart (it takes the migration over
    /// from its work directory): a lost connection is retried for <see cref="AgentRecovery"/>.</summary>
    private async Task<T> CallDestination<T>(string op, object args, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + AgentRecovery;
        while (true)
        {
            try
            {
                _dst ??= await ControlChannel.ConnectAsync(_plan.To.Agent, _plan.Secret, ct);
                return await _dst.CallAsync<T>(op, args, ct);
            }
            catch (AgentException e) when (e.ConnectionLost && DateTime.UtcNow < deadline)
            {
                _progress?.Invoke(new MigrationProgress("destination agent lost; reconnecting", 0, 0, 0, 0, _clock.Elapsed.TotalSeconds));
                if (_dst is not null)
                {
                    await _dst.DisposeAsync();
                    _dst = null;
                }

                await Task.Delay(500, ct);
            }
        }
    }

    private GuideReport? GuideSummary(SourceFinishResult served)
    {
        if (_plan.Guide is not { Enabled: true })
        {
            return null;
        }

        if (served.Guide is not { } g)
        {
            return new GuideReport(false, 0, 0, null, 0, 0, 0, 0, 0, _guideFailure ?? "guide did not run");
        }

        long pushed = served.PushPages;
        double? hit = pushed + g.DemandDuringGuide > 0 ? Math.Round((double)pushed / (pushed + g.DemandDuringGuide), 3) : null;
        return new GuideReport(g.RuntimeSeconds > 0, g.PagesLogged, pushed, hit, g.LatePushes, g.Misses, g.DemandDuringGuide,
            g.RuntimeSeconds, g.CpuSeconds, g.StopReason, g.PushSkipped, g.LateInFlight, g.LateLeadP50Ms, g.Overtaken);
    }

    /// <summary>How long the controller waits for a lost destination agent after the commit point.</summary>
    public static readonly TimeSpan AgentRecovery = TimeSpan.FromMinutes(5);

    private static async Task WaitForAHeartbeat(HeartbeatFollower follower, CancellationToken ct)
    {
        // A fresh heartbeat with a host timestamp anchors the "during" window; at most ~1.5 s.
        var deadline = DateTime.UtcNow.AddSeconds(1.5);
        while (follower.Snapshot().Count == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50, ct);
        }
    }

    /// <summary>
    /// Undoes everything before the commit point: the destination QEMU goes first (it must never
    /// run the guest), then the source resumes. Returns a note for the error message.
    /// </summary>
    private async Task<string> Rollback(ControlChannel? src, ControlChannel? dst, string id)
    {
        string note = "";
        bool destinationClean = false;
        if (dst is not null)
        {
            try
            {
                await dst.CallAsync<Empty>("dest.abort", new MigrationRequest(id), CancellationToken.None);
                destinationClean = true;
            }
            catch (AgentException)
            {
            }
        }

        if (!destinationClean)
        {
            // The destination agent is gone: remove its paused QEMU through libvirt directly.
            note += DestinationLeftovers.Remove(_plan.To.LibvirtUri, _plan.Domain, _sourceUuid);
        }

        if (src is not null)
        {
            try
            {
                await src.CallAsync<Empty>("source.abort", new MigrationRequest(id), CancellationToken.None);
                note += "; rolled back: the source runs again";
            }
            catch (AgentException e)
            {
                note += $"; the source agent could not resume the source ({e.Message}): resume it with 'virsh -c {_plan.From.LibvirtUri} resume {_plan.Domain}'";
            }
        }

        return note;
    }

    private static async Task DisposeAll(params ControlChannel?[] channels)
    {
        foreach (var c in channels)
        {
            if (c is not null)
            {
                await c.DisposeAsync();
            }
        }
    }

    private MigrationReport Finish(MigrationOutcome outcome, string error, DateTimeOffset startedAt) => new()
    {
        Mode = _plan.Mode,
        Domain = _plan.Domain,
        Source = _plan.From.Name,
        Destination = _plan.To.Name,
        Outcome = outcome,
        Error = error,
        StartedAt = startedAt,
        TotalSeconds = Math.Round(_clock.Elapsed.TotalSeconds, 3),
        PhasesMs = _phases,
    };

    private TimeSpan _lastMark;
    private string _sourceUuid = "";
    private string? _guideFailure;
    private ControlChannel? _dst;

    /// <summary>Records how long the phase that ends now took.</summary>
    private void Phase(string name)
    {
        var now = _clock.Elapsed;
        _phases[name] = Math.Round((now - _lastMark).TotalMilliseconds, 1);
        _lastMark = now;
    }

    private void Report(string phase) =>
        _progress?.Invoke(new MigrationProgress(phase, 0, 0, 0, 0, _clock.Elapsed.TotalSeconds));

    private static double R(double x) => Math.Round(x, 3);

}
