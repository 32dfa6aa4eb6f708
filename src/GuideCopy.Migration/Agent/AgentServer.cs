using System.Text.Json;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using LibvirtSharp;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// The per-host agent: accepts authenticated control connections (UNIX socket, optionally TCP)
/// and runs this host's part of each migration — as a source (<see cref="SourceSide"/>) or a
/// destination (<see cref="DestinationSide"/>). Requests on one connection run in order;
/// connections run concurrently. At start it reads its journal and takes up every migration an
/// earlier agent left unfinished; before the commit point it rolls a migration back by itself
/// when the controller's lease runs out.
/// </summary>
public sealed class AgentServer : ISourceAgent, IDestinationAgent
{
    private readonly AgentOptions _options;
    private readonly byte[] _secret;
    private readonly AgentLog _lines;
    private readonly MigrationSides<SourceSide> _sources;
    private readonly MigrationSides<DestinationSide> _destinations;
    private readonly ControllerLeases _leases;
    private MigrationJournal? _journal;

    public AgentServer(AgentOptions options, AgentLog log)
    {
        _options = options;
        _lines = log;
        _secret = SharedSecret.Read(options.SecretFile);
        _sources = new MigrationSides<SourceSide>(log);
        _destinations = new MigrationSides<DestinationSide>(log);
        _leases = new ControllerLeases(options, log);
    }

    private MigrationJournal Journal => _journal ?? throw new InvalidOperationException("agent not started");

    public async Task RunAsync(CancellationToken ct)
    {
        // root:QEMU's group 0750: QEMU only traverses it to its own migration's sockets (MigrationWorkDir).
        MigrationWorkDir.CreateRoot(_options, QemuUser.Resolve(_options));
        PausePathPrecompiler.Start(_lines);
        _journal = new MigrationJournal(_options.JournalDir);
        _journal.Prune(TimeSpan.FromDays(_options.JournalKeepDays));
        TakeUpJournal();

        var control = new ControlConnections(_options, _secret, _lines, _leases, (op, args, c) => AgentDispatch.AnswerAsync(this, op, args, c));
        control.Open();
        var watchdog = Task.Run(() => _leases.WatchAsync(_sources, _destinations, ct), CancellationToken.None);
        try
        {
            await control.ServeAsync(ct);
        }
        finally
        {
            control.Close();
            await watchdog;
            // Committed migrations stay in the journal for the next agent; earlier ones roll back.
            foreach (var d in _destinations.Values)
            {
                d.Shutdown();
            }

            foreach (var s in _sources.Values)
            {
                s.Shutdown();
            }
        }
    }

    /// <summary>Every migration an earlier agent on this host left unfinished: undone before the commit point, finished after it.</summary>
    private void TakeUpJournal()
    {
        foreach (var entry in Journal.ReadAll(m => _lines.Error($"journal: unreadable entry {m}")))
        {
            if (entry.Stage.IsFinal() && !(entry.Stage == MigrationStage.Completed && entry.Role == MigrationRole.Destination && !entry.SourceReleased)
                && !(entry.Stage == MigrationStage.Completed && entry.Role == MigrationRole.Source && !entry.SourceRemoved)
                && !(entry.Stage == MigrationStage.RolledBack && entry.Role == MigrationRole.Destination && entry.AbandonPending))
            {
                continue;
            }

            try
            {
                if (entry.Role == MigrationRole.Source && SourceSide.Recover(_options, _secret, Journal, entry, _lines) is { } source)
                {
                    _sources.Put(entry.Id, source);
                }
                else if (entry.Role == MigrationRole.Destination && DestinationSide.Recover(_options, _secret, Journal, entry, _lines) is { } destination)
                {
                    _destinations.Put(entry.Id, destination);
                }
            }
            catch (Exception e) when (e is LibvirtException or AgentException or IOException)
            {
                _lines.Error($"{entry.Id}: could not take the migration up again: {e.Message}");
            }
        }
    }

    public Task<HostFacts> FactsAsync(CancellationToken ct) => Task.FromResult(HostFactsReader.Read(_options));

    public Task LeaseAsync(MigrationRequest req, CancellationToken ct) => Task.CompletedTask; // renewed by ControlConnections, as by every request naming it

    public Task<JobsResult> JobsAsync(CancellationToken ct) => Task.FromResult(new JobsResult(Environment.MachineName, HostJobs.List(Journal, _destinations)));

    public Task<AbortResult> AbortAsync(AbortRequest req, CancellationToken ct) => Task.FromResult(Abort(req));

    public Task<DestinationCheckResult> CheckDestinationAsync(DestinationCheckRequest req, CancellationToken ct) =>
        Task.FromResult(DestinationPreflight.Check(_options, req));

    public Task<SourcePrepareResult> PrepareSourceAsync(DomainRequest req, CancellationToken ct) =>
        Task.FromResult(SourcePreflight.Prepare(_options, req.Domain));

    public async Task PrepareGuideAsync(GuidePrepareRequest req, CancellationToken ct)
    {
        var side = AddSource(req.MigrationId);
        await _sources.RunOrAbortAsync(req.MigrationId, side, s => s.PrepareGuideAsync(req, ct), "the guide did not start");
    }

    /// <summary>The source's side of a migration that had no guide prepared is made here; one with a guide, by its prepare.</summary>
    public async Task<SourceArmResult> ArmSourceAsync(SourceArmRequest req, CancellationToken ct)
    {
        var side = _sources.TryGet(req.MigrationId, out var prepared) ? prepared : AddSource(req.MigrationId);
        return await _sources.RunOrAbortAsync(req.MigrationId, side, s => s.ArmAsync(req, ct), "the source could not be armed");
    }

    public async Task<SwitchoverResult> SwitchoverAsync(SwitchoverRequest req, CancellationToken ct)
    {
        var side = _sources.Get(req.MigrationId);
        // A failed switchover has rolled its side back already. A side that committed meanwhile
        // (it cannot, before the save's verdict) would stay.
        return await _sources.RunOrForgetAsync(req.MigrationId, side, s => s.SwitchoverAsync(req, ct), s => s.Stage.IsCommitted());
    }

    public async Task<WarmUpResult> WarmUpAsync(WarmUpRequest req, CancellationToken ct)
    {
        var side = _sources.Get(req.MigrationId);
        return await _sources.RunOrAbortAsync(req.MigrationId, side, s => s.WarmUpAsync(req, ct), "the warm-up failed");
    }

    public Task<SourceFinishResult> FinishSourceAsync(MigrationRequest req, CancellationToken ct)
    {
        if (_sources.TryGet(req.MigrationId, out var side))
        {
            return Task.Run(side.Finish, ct);
        }

        return Journal.Read(req.MigrationId) is { Role: MigrationRole.Source, Stage: MigrationStage.Completed } done
            ? Task.FromResult(done.Result.Deserialize<SourceFinishResult>(ControlChannel.Json)!)
            : throw new AgentException($"no migration {req.MigrationId} on this host");
    }

    public Task AbortSourceAsync(MigrationRequest req, CancellationToken ct)
    {
        if (_sources.TryGet(req.MigrationId, out var side))
        {
            side.Abort("the controller rolled back");
            _sources.Remove(req.MigrationId);
        }
        else if (Journal.Read(req.MigrationId) is { Role: MigrationRole.Source } kept && kept.Stage.IsCommitted())
        {
            throw new AgentException($"migration {req.MigrationId} is committed: the source will not resume");
        }

        return Task.CompletedTask;
    }

    public async Task<DestinationStartResult> PrepareDestinationAsync(DestinationPrepareRequest req, CancellationToken ct)
    {
        var side = AddDestination(req.MigrationId);
        return await _destinations.RunOrAbortAsync(req.MigrationId, side, d => d.PrepareAsync(req, ct), "the destination did not start");
    }

    public async Task<DestinationArmResult> ArmDestinationAsync(DestinationArmRequest req, CancellationToken ct)
    {
        var side = _destinations.Get(req.MigrationId);
        return await _destinations.RunOrAbortIfHereAsync(req.MigrationId, side, d => d.ArmAsync(req, ct), static _ => true, "the destination could not be armed");
    }

    public async Task<DestinationStartResult> LoadAsync(DestinationLoadRequest req, CancellationToken ct)
    {
        var side = _destinations.Get(req.MigrationId);
        // From "committing" on only the source's decision removes this copy (a late answer
        // is asked again by the controller, through dest.status / dest.resume).
        return await _destinations.RunOrAbortIfHereAsync(req.MigrationId, side, d => d.LoadAsync(req, ct),
            d => d.Stage < MigrationStage.Committing, "the device state did not load");
    }

    public Task<ResumeResult> ResumeAsync(MigrationRequest req, CancellationToken ct) => _destinations.Get(req.MigrationId).ResumeAsync(ct);

    public Task<DestinationStatus> StatusAsync(MigrationRequest req, CancellationToken ct) =>
        Task.FromResult(_destinations.TryGet(req.MigrationId, out var side) ? side.Status() : HostJobs.KeptStatus(Journal, req.MigrationId));

    public async Task<DestinationStatus> FinishDestinationAsync(DestinationFinishRequest req, CancellationToken ct) =>
        _destinations.TryGet(req.MigrationId, out var side) ? await side.FinishAsync(ct) : HostJobs.KeptStatus(Journal, req.MigrationId);

    public Task AbortDestinationAsync(AbortRequest req, CancellationToken ct)
    {
        if (_destinations.TryGet(req.MigrationId, out var side))
        {
            side.Abort("the controller rolled back", req.SourceRolledBack);
            _destinations.Remove(req.MigrationId);
        }

        return Task.CompletedTask;
    }

    /// <summary>'guidecopy abort': undoes this host's part if the migration is before its commit point here; says why not otherwise.</summary>
    private AbortResult Abort(AbortRequest req)
    {
        string id = req.MigrationId;
        if (_sources.TryGet(id, out var source))
        {
            source.Abort("aborted by an operator");
            _sources.Remove(id);
            return new AbortResult(true, "rolled back: the source runs again");
        }

        if (_destinations.TryGet(id, out var destination))
        {
            destination.Abort("aborted by an operator", req.SourceRolledBack);
            _destinations.Remove(id);
            return new AbortResult(true, "the destination copy was removed");
        }

        return Journal.Read(id) is { } e
            ? new AbortResult(false, $"migration {id} is {e.Stage} here: nothing to abort")
            : throw new AgentException($"no migration {id} on this host");
    }

    /// <summary>A new source side (<see cref="MigrationSides{T}.Add{TOther}"/>), its lease renewed.</summary>
    private SourceSide AddSource(string id)
    {
        var side = _sources.Add(id, () => new SourceSide(_options, _secret, id, Journal, _lines), _destinations, Journal);
        _leases.Renew(id);
        return side;
    }

    /// <summary>A new destination side (<see cref="MigrationSides{T}.Add{TOther}"/>), its lease renewed.</summary>
    private DestinationSide AddDestination(string id)
    {
        var side = _destinations.Add(id, () => new DestinationSide(_options, _secret, id, Journal, _lines), _sources, Journal);
        _leases.Renew(id);
        return side;
    }
}
