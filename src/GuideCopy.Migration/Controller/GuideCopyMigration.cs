using System.Diagnostics;
using System.Text.RegularExpressions;
using GuideCopy.Guest;
using GuideCopy.Migration.Baselines;
using LibvirtSharp;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Definitions;
using GuideCopy.Migration.Journal;
using GuideCopy.Migration.Report;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// The controller's side of our mode (docs/migration.md, "Stages and the journal"): preflight
/// on both hosts, destination start, switchover (suspend + device state), load, the commit
/// point, then following the transfer the agents finish by themselves. The stage it has seen
/// is one <see cref="MigrationStage"/>; the commit point is never inferred from a reply: a
/// lost or failed resume is answered by asking the destination, and a rollback starts by
/// asking the source to take the decision "rolled back", which it refuses once committed.
/// </summary>
public sealed partial class GuideCopyMigration
{
    private readonly MigrationPlan _plan;
    private readonly Action<MigrationProgress>? _progress;
    private readonly Dictionary<string, double> _phases = [];
    private readonly Stopwatch _clock = new();
    private readonly string _id;
    private MigrationStage _stage = MigrationStage.Preflight;
    private readonly IAgentConnector _agents;
    private ISourceAgent? _src;
    private IDestinationAgent? _dst;
    private ControllerLease? _lease;
    private SourcePrepareResult? _prepared;
    private HeartbeatFollower? _follower;
    private IReadOnlyList<Heartbeat> _history = [];
    private DateTime _switchoverAt;
    private bool _guidePrepared;
    private SwitchoverResult? _switched;
    private SourceArmResult? _armed;
    private Task<DestinationStartResult>? _loading;
    private Connection? _sourceLibvirt, _destinationLibvirt;
    private LibvirtSharp.Domain? _watchedDomain;
    private GuestPauseWatch? _pauseWatch;
    private ResumeResult? _resumed;
    private DateTimeOffset _startedAt;

    public GuideCopyMigration(MigrationPlan plan, Action<MigrationProgress>? progress = null)
    {
        _plan = plan;
        _progress = progress;
        _id = NewId(plan.Domain);
        _agents = plan.Agents ?? new ControlChannelConnector(plan.From.Agent, plan.To.Agent, plan.Secret);
    }

    /// <summary>The migration id the agents journal it under (its prefix is the domain name, made file-name safe).</summary>
    public string Id => _id;

    /// <summary>The stage this controller has seen.</summary>
    public MigrationStage Stage => _stage;

    public static string NewId(string domain)
    {
        string safe = UnsafeIdCharacters().Replace(domain, "_").TrimStart('.');
        return $"{(safe.Length > 48 ? safe[..48] : safe)}-{Guid.NewGuid().ToString("N")[..8]}";
    }

    [GeneratedRegex("[^A-Za-z0-9._-]")]
    private static partial Regex UnsafeIdCharacters();

    /// <summary>
    /// Runs the migration. <paramref name="ct"/> is the operator's interrupt (Ctrl-C, SIGTERM):
    /// before the commit point it rolls back in full (the rollback itself is never cancelled);
    /// after it the controller detaches and the agents finish.
    /// </summary>
    public async Task<MigrationReport> RunAsync(CancellationToken ct)
    {
        _startedAt = DateTimeOffset.UtcNow;
        _clock.Start();
        var caller = ct;
        // --timeout bounds the steps before the commit point only: after it the VM is the
        // destination's and giving up would not give it back.
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        if (_plan.Timeout is { } limit)
        {
            deadline.CancelAfter(limit);
            ct = deadline.Token;
        }

        try
        {
            if (await PreflightAsync(ct) is { Count: > 0 } problems)
            {
                return Finish(MigrationOutcome.Refused, string.Join("\n", problems)) with { Problems = problems };
            }

            // Watching the guest's console is the lab's measurement, not migration work: off the clock.
            _clock.Stop();
            await StartGuestWatchAsync(ct);
            _clock.Start();
            WatchThePause();
            await PrepareDestinationAsync(ct);
            if (_plan.BeforeSwitchover is { } beforeSwitchover)
            {
                await beforeSwitchover();
            }

            await SwitchoverAsync(ct);
            await LoadAsync(ct);
            await CommitAsync(caller);
        }
        catch (Exception e) when (!_stage.IsCommitted())
        {
            if (e is OperationCanceledException && deadline.IsCancellationRequested && !caller.IsCancellationRequested)
            {
                e = new TimeoutException($"the commit point was not reached within --timeout {_plan.Timeout!.Value.TotalSeconds:0.###} s");
            }

            var rolledBack = await RollBackAsync(e);
            if (rolledBack is not null)
            {
                return rolledBack;
            }

            // The source refused the rollback: it had already committed. Follow it.
        }
        finally
        {
            if (_lease is not null && _stage.IsCommitted())
            {
                await _lease.DisposeAsync();
                _lease = null;
            }
        }

        return await FollowToCompletionAsync(caller);
    }

    /// <summary>
    /// The preflight alone (`guidecopy check`): both agents, the domain and the hosts checked,
    /// nothing paused, started or journaled. Empty when nothing stands in the way.
    /// </summary>
    public async Task<IReadOnlyList<string>> CheckAsync(CancellationToken ct)
    {
        try
        {
            return await PreflightAsync(ct);
        }
        finally
        {
            await DisposeAll();
        }
    }

    /// <summary>Both agents, the domain and the hosts checked; each problem names its fix.</summary>
    private async Task<List<string>> PreflightAsync(CancellationToken ct)
    {
        Report("preflight");
        _src = await _agents.ConnectSourceAsync(ct);
        _dst = await _agents.ConnectDestinationAsync(ct);
        _prepared = await _src.PrepareSourceAsync(new DomainRequest(_plan.Domain), ct);
        var srcFacts = await _src.FactsAsync(ct);
        var dstFacts = await _dst.FactsAsync(ct);
        var def = DomainDefinition.Parse(_prepared.MigratableXml);
        var check = await _dst.CheckDestinationAsync(
            new DestinationCheckRequest(def.Name, def.Disks.Select(d => d.Source).OfType<string>().ToList(), _prepared.RamBytes), ct);
        var problems = _prepared.Problems.Concat(Preflight.Compare(srcFacts, dstFacts, _prepared)).Concat(check.Problems).ToList();
        Phase("preflight");
        return problems;
    }

    /// <summary>The guest's console, when the controller can read it (lab guests), for throughput.</summary>
    private async Task StartGuestWatchAsync(CancellationToken ct)
    {
        string? console = _plan.ConsoleFile ?? DomainDefinition.Parse(_prepared!.MigratableXml).ConsoleFile;
        if (console is not null && File.Exists(console))
        {
            _follower = new GuestConsole(console).Follow();
            await WaitForAHeartbeat(_follower, ct);
            _history = new GuestConsole(console).ReadAll();
        }
    }

    /// <summary>
    /// The downtime as the guest sees it, measured as for every other mode (<see cref="GuestPauseWatch"/>:
    /// the source's SUSPENDED to the destination's RESUMED event), where this controller can reach
    /// both libvirtds; else the agents' own clocks (suspend call to resume call) stand in.
    /// </summary>
    private void WatchThePause()
    {
        try
        {
            _sourceLibvirt = Connection.Open(_plan.From.LibvirtUri);
            _destinationLibvirt = Connection.Open(_plan.To.LibvirtUri);
            _watchedDomain = _sourceLibvirt.LookupDomain(_plan.Domain);
            _pauseWatch = new GuestPauseWatch(_sourceLibvirt, _watchedDomain, _destinationLibvirt, _plan.Domain);
        }
        catch (LibvirtException)
        {
            StopWatchingThePause();
        }
    }

    private void StopWatchingThePause()
    {
        _pauseWatch?.Dispose();
        _pauseWatch = null;
        _watchedDomain?.Dispose();
        _watchedDomain = null;
        _sourceLibvirt?.Dispose();
        _sourceLibvirt = null;
        _destinationLibvirt?.Dispose();
        _destinationLibvirt = null;
    }

    /// <summary>
    /// While the source still runs: the destination QEMU started paused with the shim, beside it
    /// the guide's QEMU and the source armed (page server listening, handles open); then the
    /// destination armed against it (QEMU in migrate-incoming, the pager's lanes authenticated).
    /// </summary>
    private async Task PrepareDestinationAsync(CancellationToken ct)
    {
        Report("destination start");
        // From the first request that creates anything, the agents hold a lease on our life.
        _lease = new ControllerLease(_id, _agents);
        _stage = MigrationStage.DestinationPrepared;
        var startDestination = _dst!.PrepareDestinationAsync(
            new DestinationPrepareRequest(_id, _prepared!.MigratableXml, _prepared.Name, _prepared.Persistent ? _prepared.PersistentXml : null), ct);
        try
        {
            if (_plan.Guide is { Enabled: true })
            {
                // A guide that fails to start is not fatal: the migration goes on as --guide off.
                try
                {
                    await _src!.PrepareGuideAsync(new GuidePrepareRequest(_id, _plan.Domain), ct);
                    _guidePrepared = true;
                }
                catch (AgentException e) when (!e.ConnectionLost)
                {
                    _guideFailure = $"guide did not start: {e.Message}";
                }
            }

            _armed = await _src!.ArmSourceAsync(new SourceArmRequest(_id, _plan.Domain, _plan.BandwidthBytesPerSecond, _plan.Push, _plan.ClearTextLanes, _plan.KeepSourceDefinition), ct);
            _phases["sourceArm"] = _armed.ArmMs;
        }
        finally
        {
            // Never leave the destination's start unobserved (a failure above rolls back; it must have ended).
            await Task.WhenAny(startDestination);
        }

        var started = await startDestination;
        _phases["destinationStart"] = Math.Round(started.StartMs, 1);
        var armed = await _dst.ArmDestinationAsync(
            new DestinationArmRequest(_id, _plan.PageServerRoute?.Invoke(_armed.PageServer) ?? _armed.PageServer, _armed.SessionId, _plan.ClearTextLanes), ct);
        _phases["destinationArm"] = armed.ArmMs;
        Phase("destinationPrepare");
    }

    /// <summary>
    /// The pause. The destination is asked first to load and, unless the plan holds the commit
    /// for a hook, to take the commit point the moment its QEMU has loaded; then the source
    /// suspends and streams its device state to the destination over the migration link. So
    /// nothing in the pause waits for this controller: its two requests are already there.
    /// </summary>
    private async Task SwitchoverAsync(CancellationToken ct)
    {
        Report("switchover");
        bool commitWhenLoaded = _plan.BeforeCommit is null;
        _loading = _dst!.LoadAsync(new DestinationLoadRequest(_id, commitWhenLoaded, _plan.MaxDowntime?.TotalMilliseconds ?? 0), ct);
        _switchoverAt = DateTime.UtcNow;
        _stage = MigrationStage.SourcePaused;
        try
        {
            _switched = await _src!.SwitchoverAsync(new SwitchoverRequest(_id, _plan.Domain, _guidePrepared ? _plan.Guide : null), ct);
        }
        catch
        {
            // The source rolled back; the destination's load ends with the rollback's abort.
            _ = _loading.ContinueWith(t => t.Exception, TaskScheduler.Default);
            throw;
        }

        _stage = commitWhenLoaded ? MigrationStage.Committing : MigrationStage.DeviceStateSaved;
        _phases["suspend"] = _switched.SuspendMs;
        _phases["deviceStateSave"] = _switched.DeviceStateSaveMs;
        _phases["freeze"] = _switched.FreezeMs;
    }

    /// <summary>The destination's load (and, unless held, its commit); a hook that holds the commit runs between.</summary>
    private async Task LoadAsync(CancellationToken ct)
    {
        if (_plan.BeforeCommit is not { } hook)
        {
            return; // the load and the commit are one request: CommitAsync hears its answer
        }

        var loaded = await _loading!;
        _stage = MigrationStage.DestinationLoaded;
        _phases["deviceStateLoad"] = loaded.LoadMs;
        await hook();
    }

    /// <summary>
    /// The commit point. The destination asks the source for the decision and resumes on
    /// "committed". Whatever happens to the reply (lost, timed out, interrupted), the answer
    /// comes from the destination's journal, asked again: never from a guess.
    /// </summary>
    private async Task CommitAsync(CancellationToken ct)
    {
        _stage = MigrationStage.Committing;
        var asked = Stopwatch.StartNew();
        try
        {
            if (_plan.BeforeCommit is null)
            {
                var loaded = await _loading!;
                _phases["deviceStateLoad"] = loaded.LoadMs;
                _phases["commit"] = loaded.CommitMs;
                _phases["resume"] = loaded.ResumeMs;
                _resumed = new ResumeResult(loaded.ResumedAtUnixMs);
            }
            else
            {
                _resumed = await _dst!.ResumeAsync(new MigrationRequest(_id), ct);
                // Journal Committing, the source's decision (its journal), the resume, journal Committed.
                _phases["commit"] = Math.Round(asked.Elapsed.TotalMilliseconds, 1);
            }
        }
        catch (AgentException e) when (e.Message.Contains("has not answered", StringComparison.Ordinal))
        {
            // The destination answered: it has not committed, it waits for the source's word.
            // Asking it again changes nothing; the rollback asks the source, whose journal holds
            // the one decision (a committed source refuses it, and the migration is followed).
            Report($"the destination is still waiting for the source's decision ({e.Message}); asking the source");
            throw;
        }
        catch (Exception e) when (e is AgentException { ConnectionLost: true } or OperationCanceledException or TimeoutException)
        {
            // No answer is not a "no": the destination may have resumed. Ask it; if it cannot
            // say, the rollback asks the source, whose journal holds the one decision.
            Report($"no answer to the resume ({e.Message}); asking the destination");
            _resumed = await AskDestinationForTheCommitAsync(_plan.CommitAsk ?? DefaultCommitAsk)
                ?? throw new AgentException($"the destination did not confirm the commit ({e.Message})");
        }

        _stage = MigrationStage.Committed;
        Phase("switchover");
        if (_plan.AfterCommit is { } afterCommit)
        {
            await afterCommit();
        }
    }

    /// <summary>How long a controller that lost the resume's reply asks the destination before it lets the source arbitrate.</summary>
    public static readonly TimeSpan DefaultCommitAsk = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Asks the destination (its journal, through dest.status) what became of the commit, for at
    /// most <paramref name="patience"/>: the recorded resume when it committed; null when it did
    /// not (rolled back, or the resume never reached it) or could not be asked.
    /// </summary>
    private async Task<ResumeResult?> AskDestinationForTheCommitAsync(TimeSpan patience)
    {
        var deadline = DateTime.UtcNow + patience;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                _dst ??= await _agents.ConnectDestinationAsync(CancellationToken.None);
                var s = await _dst.StatusAsync(new MigrationRequest(_id), CancellationToken.None);
                if (s.Stage is nameof(MigrationStage.Committed) or nameof(MigrationStage.Completed) || s.ResumedAtUnixMs > 0)
                {
                    return new ResumeResult(s.ResumedAtUnixMs);
                }

                if (s.Stage is nameof(MigrationStage.RolledBack) or nameof(MigrationStage.DestinationLoaded) or nameof(MigrationStage.Failed))
                {
                    return null;
                }
            }
            catch (AgentException e) when (e.ConnectionLost)
            {
                await CloseAsync(_dst);
                _dst = null;
            }
            catch (AgentException)
            {
                // "no migration here": a restarted agent still taking it up, or it never got it.
            }

            await Task.Delay(500);
        }

        return null;
    }

    /// <summary>
    /// Undoes everything before the commit point, in the one order that is safe: the source takes
    /// the decision "rolled back" (and resumes) first, so the destination can never resume after;
    /// then the destination copy goes. Returns null when the source says it already committed.
    /// </summary>
    private async Task<MigrationReport?> RollBackAsync(Exception cause)
    {
        _follower?.Dispose();
        _follower = null;
        string why = cause is OperationCanceledException ? "interrupted" : cause.Message;
        bool paused = _stage >= MigrationStage.SourcePaused;
        string note = "";
        bool sourceDecided = false;
        var deadline = DateTime.UtcNow + SourceRecovery;
        while (_stage >= MigrationStage.DestinationPrepared)
        {
            try
            {
                _src ??= await _agents.ConnectSourceAsync(CancellationToken.None);
                await _src.AbortSourceAsync(new MigrationRequest(_id), CancellationToken.None);
                sourceDecided = true;
                if (paused)
                {
                    note += "; rolled back: the source runs again";
                }

                break;
            }
            catch (AgentException e) when (e.Message.Contains("is committed", StringComparison.Ordinal))
            {
                Report("the source had already committed: following the migration");
                _stage = MigrationStage.Committed;
                _resumed = await AskDestinationForTheCommitAsync(AgentRecovery) ?? new ResumeResult(0);
                return null;
            }
            catch (AgentException e) when (e.ConnectionLost && DateTime.UtcNow < deadline)
            {
                Report("source agent lost; reconnecting to roll back");
                await CloseAsync(_src);
                _src = null;
                await Task.Delay(1000);
            }
            catch (AgentException e)
            {
                note += $"; the source agent could not roll back ({e.Message}): it rolls back by itself when it runs again (its journal), and its lease on this controller runs out in Agent:ControllerLeaseSeconds";
                break;
            }
        }

        if (sourceDecided || _stage < MigrationStage.SourcePaused)
        {
            note += await RemoveDestinationCopyAsync(sourceDecided);
        }

        await DisposeAll();
        return Finish(paused ? MigrationOutcome.RolledBack : MigrationOutcome.Refused, why + note);
    }

    /// <summary>Once the source cannot commit any more: the destination copy (it never ran) goes, through its agent or else through libvirt.</summary>
    private async Task<string> RemoveDestinationCopyAsync(bool sourceRolledBack)
    {
        if (_stage < MigrationStage.DestinationPrepared)
        {
            return "";
        }

        try
        {
            _dst ??= await _agents.ConnectDestinationAsync(CancellationToken.None);
            await _dst.AbortDestinationAsync(new AbortRequest(_id, sourceRolledBack), CancellationToken.None);
            return "";
        }
        catch (AgentException e) when (e.ConnectionLost)
        {
            // The destination agent is gone: remove its paused QEMU through libvirt directly.
            return DestinationLeftovers.Remove(_plan.To.LibvirtUri, _plan.Domain, _prepared?.Uuid ?? "");
        }
        catch (AgentException e)
        {
            return $"; the destination refused to remove its copy ({e.Message})";
        }
    }

    /// <summary>
    /// After the commit point: the agents move every page and finish by themselves; the controller
    /// watches, says when nothing moves, and detaches when interrupted or stuck.
    /// </summary>
    private async Task<MigrationReport> FollowToCompletionAsync(CancellationToken ct)
    {
        DestinationStatus status;
        try
        {
            status = await WaitForCompletion(ct);
        }
        catch (Exception e)
        {
            _follower?.Dispose();
            await DisposeAll();
            bool interrupted = e is OperationCanceledException;
            return Finish(interrupted || e is StalledException ? MigrationOutcome.Detached : MigrationOutcome.FailedAfterCommit,
                $"{(interrupted ? "interrupted" : e.Message)} (after the commit point: the VM runs on {_plan.To.Name}; the agents finish the migration: follow it with 'guidecopy job {_id} --host {_plan.To.Name}')");
        }

        Phase("transfer");
        SourceFinishResult? served = null;
        string? sourceNote = null;
        try
        {
            _src ??= await _agents.ConnectSourceAsync(CancellationToken.None);
            served = await _src.FinishSourceAsync(new MigrationRequest(_id), CancellationToken.None);
        }
        catch (AgentException e)
        {
            sourceNote = $"the source's figures are missing ({e.Message}); the destination tells it to remove its copy";
        }

        Phase("completion");
        var completedAt = DateTime.UtcNow;
        double totalSeconds = Math.Round(_clock.Elapsed.TotalSeconds, 3);
        if (_follower is not null)
        {
            await ThroughputWindows.ObserveAsync(_switchoverAt, completedAt, _plan.ObserveAfter, CancellationToken.None);
        }

        var live = _follower?.Snapshot() ?? [];
        GuestThroughput? guest = _follower is null ? null : ThroughputWindows.Compute(_history, live, _switchoverAt, completedAt);
        _follower?.Dispose();
        var timeline = new MigrationTimeline(ThroughputWindows.Series(_history, live, _switchoverAt), _pageSamples, _plan.BandwidthBytesPerSecond);
        // The switchover's reply can be lost while the source still committed (its agent died
        // right after deciding): the migration is followed all the same, without its figures.
        var switched = _switched;
        if (switched is null)
        {
            sourceNote = string.Join("; ", new[] { sourceNote, "the switchover's reply was lost: the pause's figures are missing" }.Where(n => n is not null));
        }

        double? agentClocks = _resumed is { ResumedAtUnixMs: > 0 } r && switched is not null ? r.ResumedAtUnixMs - switched.SuspendedAtUnixMs : null;
        if (agentClocks is { } byAgents)
        {
            _phases["downtimeByAgentClocks"] = byAgents;
        }

        double? downtime = _pauseWatch?.Observed() is { } seen ? Math.Round(seen.TotalMilliseconds, 2) : agentClocks;
        await DisposeAll();
        return new MigrationReport
        {
            Mode = _plan.Mode,
            Id = _id,
            Domain = _plan.Domain,
            Source = _plan.From.Name,
            Destination = _plan.To.Name,
            Outcome = MigrationOutcome.Completed,
            Error = sourceNote,
            StartedAt = _startedAt,
            TotalSeconds = totalSeconds,
            DowntimeMs = downtime,
            BytesOnWire = (served?.Served.BytesOnWire ?? status.Pages.BytesReceived) + (switched?.DeviceStateBytes ?? 0),
            DeviceStateBytes = switched?.DeviceStateBytes,
            Lanes = _armed!.Lanes,
            Pages = PageCounts.From(status.Pages),
            DestinationFaults = FaultStats.From(status.Pages),
            Guest = guest,
            Guide = served is null ? null : GuideSummary(served),
            Timeline = timeline,
            PhasesMs = _phases,
        };
    }

    private sealed class StalledException(string message) : Exception(message);

    /// <summary>Polls the destination until it completed by itself; reports stalls, gives up following after <see cref="NoProgressLimit"/>.</summary>
    private async Task<DestinationStatus> WaitForCompletion(CancellationToken ct)
    {
        long lastDone = -1;
        var lastMove = DateTime.UtcNow;
        while (true)
        {
            var s = await CallDestination(d => d.StatusAsync(new MigrationRequest(_id), ct), ct);
            _pageSamples.Add(new PagesSample(Math.Round((DateTime.UtcNow - _switchoverAt).TotalSeconds, 3),
                s.Pages.DemandPages, s.Pages.PushPages, s.Pages.LocalityPages, s.Pages.BackgroundPages, s.Pages.ZeroOrRemovedPages));
            if (s.Pages.DonePages != lastDone)
            {
                lastDone = s.Pages.DonePages;
                lastMove = DateTime.UtcNow;
            }

            double still = (DateTime.UtcNow - lastMove).TotalSeconds;
            string phase = still >= 5 ? $"transfer stalled {still:0} s ({s.Stage}, {s.Pages.Reconnects} reconnects)" : "transfer";
            _progress?.Invoke(new MigrationProgress(phase, s.Pages.DonePages, s.Pages.PageCount, s.Pages.Faults, s.Pages.BytesReceived, _clock.Elapsed.TotalSeconds));
            if (s.Done)
            {
                return s;
            }

            if (s.Stage == nameof(MigrationStage.Failed))
            {
                throw new AgentException($"the destination failed: {s.Note}");
            }

            if (DateTime.UtcNow - lastMove > NoProgressLimit)
            {
                throw new StalledException($"no page moved for {NoProgressLimit.TotalMinutes:0} min ({s.Stage}, {s.Pages.Reconnects} lane reconnects)");
            }

            await Task.Delay(250, ct);
        }
    }

    /// <summary>How long the controller follows a transfer in which no page moves before it detaches (the agents go on).</summary>
    public static readonly TimeSpan NoProgressLimit = TimeSpan.FromMinutes(5);

    /// <summary>How long a rollback waits for a lost source agent to come back (a restarted one rolls back by itself).</summary>
    public static readonly TimeSpan SourceRecovery = TimeSpan.FromSeconds(60);

    /// <summary>After the commit point the destination agent may restart (it takes the migration over from its journal): a lost connection is retried for <see cref="AgentRecovery"/>.</summary>
    private async Task<T> CallDestination<T>(Func<IDestinationAgent, Task<T>> call, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + AgentRecovery;
        while (true)
        {
            try
            {
                _dst ??= await _agents.ConnectDestinationAsync(ct);
                return await call(_dst);
            }
            catch (AgentException e) when (e.ConnectionLost && DateTime.UtcNow < deadline)
            {
                _progress?.Invoke(new MigrationProgress("destination agent lost; reconnecting", 0, 0, 0, 0, _clock.Elapsed.TotalSeconds));
                await CloseAsync(_dst);
                _dst = null;
                await Task.Delay(500, ct);
            }
        }
    }

    private static ValueTask CloseAsync(object? agent) => agent is IAsyncDisposable d ? d.DisposeAsync() : ValueTask.CompletedTask;

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

        long pushed = served.Served.PushPages;
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

    private async Task DisposeAll()
    {
        StopWatchingThePause();
        if (_lease is not null)
        {
            await _lease.DisposeAsync();
            _lease = null;
        }

        await CloseAsync(_src);
        _src = null;
        await CloseAsync(_dst);
        _dst = null;
    }

    private MigrationReport Finish(MigrationOutcome outcome, string error) => new()
    {
        Mode = _plan.Mode,
        Id = _stage > MigrationStage.Preflight ? _id : null,
        Domain = _plan.Domain,
        Source = _plan.From.Name,
        Destination = _plan.To.Name,
        Outcome = outcome,
        Error = error,
        StartedAt = _startedAt,
        TotalSeconds = Math.Round(_clock.Elapsed.TotalSeconds, 3),
        PhasesMs = _phases,
    };

    private TimeSpan _lastMark;

    /// <summary>The destination's figures at each poll after the switchover (a few per second), for the pictures.</summary>
    private readonly List<PagesSample> _pageSamples = [];
    private string? _guideFailure;

    /// <summary>Records how long the phase that ends now took.</summary>
    private void Phase(string name)
    {
        var now = _clock.Elapsed;
        _phases[name] = Math.Round((now - _lastMark).TotalMilliseconds, 1);
        _lastMark = now;
    }

    private void Report(string phase) =>
        _progress?.Invoke(new MigrationProgress(phase, 0, 0, 0, 0, _clock.Elapsed.TotalSeconds));


}
