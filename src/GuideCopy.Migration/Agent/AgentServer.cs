using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
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
    private readonly Action<string> _log;
    private readonly ConcurrentDictionary<string, SourceSide> _sources = new();
    private readonly ConcurrentDictionary<string, DestinationSide> _destinations = new();
    private readonly ConcurrentDictionary<string, long> _leaseUntil = new();
    private readonly ConcurrentDictionary<string, int> _inFlight = new();
    private MigrationJournal? _journal;

    public AgentServer(AgentOptions options, AgentLog log)
    {
        _options = options;
        _lines = log;
        _log = log;
        _secret = SharedSecret.Read(options.SecretFile);
    }

    private MigrationJournal Journal => _journal ?? throw new InvalidOperationException("agent not started");

    public async Task RunAsync(CancellationToken ct)
    {
        // root:QEMU's group 0750: QEMU only traverses it to its own migration's sockets (MigrationWorkDir).
        MigrationWorkDir.CreateRoot(_options, QemuUser.Resolve(_options));
        _journal = new MigrationJournal(_options.JournalDir);
        _journal.Prune(TimeSpan.FromDays(_options.JournalKeepDays));
        TakeUpJournal();

        var listeners = new List<Socket>();
        Directory.CreateDirectory(Path.GetDirectoryName(_options.ControlSocket)!);
        File.Delete(_options.ControlSocket);
        var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        unix.Bind(new UnixDomainSocketEndPoint(_options.ControlSocket));
        File.SetUnixFileMode(_options.ControlSocket, (UnixFileMode)0b110_000_000);
        unix.Listen(16);
        listeners.Add(unix);
        _log($"control channel on unix:{_options.ControlSocket}");
        if (_options.ControlListen.Length > 0)
        {
            var tcp = new Socket(SocketType.Stream, ProtocolType.Tcp);
            tcp.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            tcp.Bind(IPEndPoint.Parse(_options.ControlListen));
            tcp.Listen(16);
            listeners.Add(tcp);
            _log($"control channel on tcp:{_options.ControlListen}");
        }

        var watchdog = Task.Run(() => WatchLeases(ct), CancellationToken.None);
        try
        {
            await Task.WhenAll(listeners.Select(l => AcceptLoop(l, ct)));
        }
        finally
        {
            foreach (var l in listeners)
            {
                l.Dispose();
            }

            File.Delete(_options.ControlSocket);
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
                && !(entry.Stage == MigrationStage.Completed && entry.Role == MigrationRole.Source && !entry.SourceRemoved))
            {
                continue;
            }

            try
            {
                if (entry.Role == MigrationRole.Source && SourceSide.Recover(_options, _secret, Journal, entry, _lines) is { } source)
                {
                    _sources[entry.Id] = source;
                }
                else if (entry.Role == MigrationRole.Destination && DestinationSide.Recover(_options, _secret, Journal, entry, _lines) is { } destination)
                {
                    _destinations[entry.Id] = destination;
                }
            }
            catch (Exception e) when (e is LibvirtException or AgentException or IOException)
            {
                _lines.Error($"{entry.Id}: could not take the migration up again: {e.Message}");
            }
        }
    }

    /// <summary>
    /// Before the commit point a migration needs its controller: one that renewed nothing for
    /// <see cref="AgentOptions.ControllerLeaseSeconds"/> is gone, and this host undoes its part
    /// (the source resumes, the destination copy goes). Committing and later are never touched.
    /// </summary>
    private async Task WatchLeases(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(1000, ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            long now = Environment.TickCount64;
            foreach (var (id, side) in _sources)
            {
                if (side.Stage is MigrationStage.Preflight or MigrationStage.SourcePaused or MigrationStage.DeviceStateSaved && LeaseExpired(id, now))
                {
                    _lines.Warning($"{id}: the controller's lease ran out before the commit point: rolling back");
                    _sources.TryRemove(id, out _);
                    Try(() => side.Abort("the controller went away before the commit point"));
                }
                else if (side.Settled)
                {
                    _sources.TryRemove(id, out _);
                }
            }

            foreach (var (id, side) in _destinations)
            {
                if (side.Stage is MigrationStage.Preflight or MigrationStage.DestinationPrepared or MigrationStage.DestinationLoaded && LeaseExpired(id, now))
                {
                    _lines.Warning($"{id}: the controller's lease ran out before the commit point: removing the destination copy");
                    _destinations.TryRemove(id, out _);
                    Try(() => side.Abort("the controller went away before the commit point"));
                }
                else if (side.Settled)
                {
                    _destinations.TryRemove(id, out _);
                }
            }
        }
    }

    private bool LeaseExpired(string id, long now) =>
        !_inFlight.ContainsKey(id) && (!_leaseUntil.TryGetValue(id, out long until) || now > until);

    private void Renew(string id) => _leaseUntil[id] = Environment.TickCount64 + _options.ControllerLeaseSeconds * 1000L;

    private void Try(Action a)
    {
        try
        {
            a();
        }
        catch (Exception e) when (e is AgentException or LibvirtException or IOException)
        {
            _log(e.Message);
        }
    }

    private async Task AcceptLoop(Socket listener, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Socket conn;
            try
            {
                conn = await listener.AcceptAsync(ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (SocketException e)
            {
                // EMFILE, ECONNABORTED ...: one failed accept must not stop the agent.
                _log($"accept failed: {e.SocketErrorCode}");
                await Task.Delay(100, CancellationToken.None);
                continue;
            }

            _ = Task.Run(() => Serve(conn, ct), ct);
        }
    }

    /// <summary>Control connections still in their handshake: a peer without the secret holds at most these, each for at most the handshake's 10 s.</summary>
    private const int MaxUnauthenticatedControl = 8;
    private int _handshaking;

    private async Task Serve(Socket conn, CancellationToken ct)
    {
        if (Interlocked.Increment(ref _handshaking) > MaxUnauthenticatedControl)
        {
            Interlocked.Decrement(ref _handshaking);
            _lines.Warning($"refused a control connection: {MaxUnauthenticatedControl} others are in their handshake");
            conn.Dispose();
            return;
        }

        ControlChannel? accepted;
        try
        {
            accepted = await ControlChannel.AcceptAsync(conn, _secret, ct);
        }
        finally
        {
            Interlocked.Decrement(ref _handshaking);
        }

        await using var channel = accepted;
        if (channel is null)
        {
            _lines.Warning("refused a control connection: it did not prove the shared secret");
            return;
        }

        while (!ct.IsCancellationRequested)
        {
            JsonObject request;
            try
            {
                request = await channel.ReadAsync(ct);
            }
            catch (Exception e) when (e is IOException or JsonException or OperationCanceledException)
            {
                return; // controller went away; its migrations roll back when its lease runs out
            }

            string op = "";
            JsonObject reply;
            string? id = null;
            try
            {
                // A peer's JSON of the wrong shape is a failed request, never a dead connection task.
                op = request["op"] is JsonValue v && v.TryGetValue(out string? name) ? name : throw new AgentException("request without an 'op' string");
                JsonNode? args = request["args"];
                id = args is JsonObject o && o["migrationId"] is { } idNode
                    ? (idNode is JsonValue iv && iv.TryGetValue(out string? s) ? s : throw new AgentException("migrationId is not a string"))
                    : null;
                if (id is not null)
                {
                    MigrationJournal.CheckId(id);
                    Renew(id);
                    _inFlight.AddOrUpdate(id, 1, (_, n) => n + 1);
                }

                object result = await Dispatch(op, request["args"], ct);
                reply = new JsonObject { ["ok"] = true, ["result"] = JsonSerializer.SerializeToNode(result, ControlChannel.Json) };
            }
            catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                string message = e is LibvirtException le ? $"libvirt: {le.LibvirtMessage}" : e.Message;
                _lines.Warning($"{op} failed: {message}");
                reply = new JsonObject { ["ok"] = false, ["error"] = message };
            }
            finally
            {
                if (id is not null && MigrationJournal.IsValidId(id))
                {
                    _inFlight.AddOrUpdate(id, 0, (_, n) => n - 1);
                    _inFlight.TryRemove(new KeyValuePair<string, int>(id, 0));
                    Renew(id);
                }
            }

            if (_options.DropReplyTo.Length > 0 && op == _options.DropReplyTo)
            {
                _log($"{op}: reply dropped (Agent:DropReplyTo, fault injection)");
                return;
            }

            try
            {
                await channel.WriteAsync(reply, ct);
            }
            catch (IOException)
            {
                return;
            }
        }
    }

    private T Args<T>(JsonNode? args) =>
        args.Deserialize<T>(ControlChannel.Json) ?? throw new AgentException($"request has no {typeof(T).Name}");

    /// <summary>One request of <see cref="AgentOps"/> to the method of the role contract that answers it.</summary>
    private async Task<object> Dispatch(string op, JsonNode? args, CancellationToken ct)
    {
        switch (op)
        {
            case AgentOps.Facts: return await FactsAsync(ct);
            case AgentOps.Lease: await LeaseAsync(Args<MigrationRequest>(args), ct); return new Empty();
            case AgentOps.Jobs: return await JobsAsync(ct);
            case AgentOps.Abort: return await AbortAsync(Args<AbortRequest>(args), ct);
            case AgentOps.SourcePrepare: return await PrepareSourceAsync(Args<DomainRequest>(args), ct);
            case AgentOps.SourceGuidePrepare: await PrepareGuideAsync(Args<GuidePrepareRequest>(args), ct); return new Empty();
            case AgentOps.SourceArm: return await ArmSourceAsync(Args<SourceArmRequest>(args), ct);
            case AgentOps.SourceSwitchover: return await SwitchoverAsync(Args<SwitchoverRequest>(args), ct);
            case AgentOps.SourceFinish: return await FinishSourceAsync(Args<MigrationRequest>(args), ct);
            case AgentOps.SourceAbort: await AbortSourceAsync(Args<MigrationRequest>(args), ct); return new Empty();
            case AgentOps.DestinationCheck: return await CheckDestinationAsync(Args<DestinationCheckRequest>(args), ct);
            case AgentOps.DestinationPrepare: return await PrepareDestinationAsync(Args<DestinationPrepareRequest>(args), ct);
            case AgentOps.DestinationArm: return await ArmDestinationAsync(Args<DestinationArmRequest>(args), ct);
            case AgentOps.DestinationLoad: return await LoadAsync(Args<DestinationLoadRequest>(args), ct);
            case AgentOps.DestinationResume: return await ResumeAsync(Args<MigrationRequest>(args), ct);
            case AgentOps.DestinationStatus: return await StatusAsync(Args<MigrationRequest>(args), ct);
            case AgentOps.DestinationFinish: return await FinishDestinationAsync(Args<DestinationFinishRequest>(args), ct);
            case AgentOps.DestinationAbort: await AbortDestinationAsync(Args<AbortRequest>(args), ct); return new Empty();
            default: throw new AgentException($"unknown request '{op}'");
        }
    }

    public Task<HostFacts> FactsAsync(CancellationToken ct) => Task.FromResult(HostFactsReader.Read(_options));

    public Task LeaseAsync(MigrationRequest req, CancellationToken ct) => Task.CompletedTask; // renewed by Serve, as by every request naming it

    public Task<JobsResult> JobsAsync(CancellationToken ct) => Task.FromResult(new JobsResult(Environment.MachineName, Jobs()));

    public Task<AbortResult> AbortAsync(AbortRequest req, CancellationToken ct) => Task.FromResult(Abort(req));

    public Task<DestinationCheckResult> CheckDestinationAsync(DestinationCheckRequest req, CancellationToken ct) =>
        Task.FromResult(DestinationSide.Check(_options, req));

    public Task<SourcePrepareResult> PrepareSourceAsync(DomainRequest req, CancellationToken ct) =>
        Task.FromResult(SourceSide.Prepare(_options, req.Domain));

    public async Task PrepareGuideAsync(GuidePrepareRequest req, CancellationToken ct)
    {
        var side = Add(_sources, req.MigrationId, () => new SourceSide(_options, _secret, req.MigrationId, Journal, _lines));
        try
        {
            await side.PrepareGuideAsync(req, ct);
        }
        catch
        {
            _sources.TryRemove(req.MigrationId, out _);
            Try(() => side.Abort("the guide did not start"));
            throw;
        }
    }

    /// <summary>The source's side of a migration that had no guide prepared is made here; one with a guide, by its prepare.</summary>
    public async Task<SourceArmResult> ArmSourceAsync(SourceArmRequest req, CancellationToken ct)
    {
        var side = _sources.TryGetValue(req.MigrationId, out var prepared)
            ? prepared
            : Add(_sources, req.MigrationId, () => new SourceSide(_options, _secret, req.MigrationId, Journal, _lines));
        try
        {
            return await side.ArmAsync(req, ct);
        }
        catch
        {
            _sources.TryRemove(req.MigrationId, out _);
            Try(() => side.Abort("the source could not be armed"));
            throw;
        }
    }

    public async Task<SwitchoverResult> SwitchoverAsync(SwitchoverRequest req, CancellationToken ct)
    {
        var side = Get(_sources, req.MigrationId);
        try
        {
            return await side.SwitchoverAsync(req, ct);
        }
        catch
        {
            // A side that committed meanwhile (it cannot, before the save's verdict) would stay.
            if (!side.Stage.IsCommitted())
            {
                _sources.TryRemove(req.MigrationId, out _);
            }

            throw;
        }
    }

    public Task<SourceFinishResult> FinishSourceAsync(MigrationRequest req, CancellationToken ct)
    {
        if (_sources.TryGetValue(req.MigrationId, out var side))
        {
            return Task.Run(side.Finish, ct);
        }

        return Journal.Read(req.MigrationId) is { Role: MigrationRole.Source, Stage: MigrationStage.Completed } done
            ? Task.FromResult(done.Result.Deserialize<SourceFinishResult>(ControlChannel.Json)!)
            : throw new AgentException($"no migration {req.MigrationId} on this host");
    }

    public Task AbortSourceAsync(MigrationRequest req, CancellationToken ct)
    {
        if (_sources.TryGetValue(req.MigrationId, out var side))
        {
            side.Abort("the controller rolled back");
            _sources.TryRemove(req.MigrationId, out _);
        }
        else if (Journal.Read(req.MigrationId) is { Role: MigrationRole.Source } kept && kept.Stage.IsCommitted())
        {
            throw new AgentException($"migration {req.MigrationId} is committed: the source will not resume");
        }

        return Task.CompletedTask;
    }

    public async Task<DestinationStartResult> PrepareDestinationAsync(DestinationPrepareRequest req, CancellationToken ct)
    {
        var side = Add(_destinations, req.MigrationId, () => new DestinationSide(_options, _secret, req.MigrationId, Journal, _lines));
        try
        {
            return await side.PrepareAsync(req, ct);
        }
        catch
        {
            _destinations.TryRemove(req.MigrationId, out _);
            Try(() => side.Abort("the destination did not start"));
            throw;
        }
    }

    public async Task<DestinationArmResult> ArmDestinationAsync(DestinationArmRequest req, CancellationToken ct)
    {
        var side = Get(_destinations, req.MigrationId);
        try
        {
            return await side.ArmAsync(req, ct);
        }
        catch
        {
            if (_destinations.TryRemove(req.MigrationId, out _))
            {
                Try(() => side.Abort("the destination could not be armed"));
            }

            throw;
        }
    }

    public async Task<DestinationStartResult> LoadAsync(DestinationLoadRequest req, CancellationToken ct)
    {
        var side = Get(_destinations, req.MigrationId);
        try
        {
            return await side.LoadAsync(req, ct);
        }
        catch
        {
            // From "committing" on only the source's decision removes this copy (a late answer
            // is asked again by the controller, through dest.status / dest.resume).
            if (side.Stage < MigrationStage.Committing && _destinations.TryRemove(req.MigrationId, out _))
            {
                Try(() => side.Abort("the device state did not load"));
            }

            throw;
        }
    }

    public Task<ResumeResult> ResumeAsync(MigrationRequest req, CancellationToken ct) => Get(_destinations, req.MigrationId).ResumeAsync(ct);

    public Task<DestinationStatus> StatusAsync(MigrationRequest req, CancellationToken ct) =>
        Task.FromResult(_destinations.TryGetValue(req.MigrationId, out var side) ? side.Status() : KeptStatus(req.MigrationId));

    public async Task<DestinationStatus> FinishDestinationAsync(DestinationFinishRequest req, CancellationToken ct) =>
        _destinations.TryGetValue(req.MigrationId, out var side) ? await side.FinishAsync(ct) : KeptStatus(req.MigrationId);

    public Task AbortDestinationAsync(AbortRequest req, CancellationToken ct)
    {
        if (_destinations.TryGetValue(req.MigrationId, out var side))
        {
            side.Abort("the controller rolled back", req.SourceRolledBack);
            _destinations.TryRemove(req.MigrationId, out _);
        }

        return Task.CompletedTask;
    }

    /// <summary>The status of a migration this agent no longer runs (an earlier agent's, or ended), from the journal.</summary>
    private DestinationStatus KeptStatus(string id)
    {
        var e = Journal.Read(id) is { Role: MigrationRole.Destination } d ? d : throw new AgentException($"no migration {id} on this host");
        var kept = e.Result?.Deserialize<DestinationStatus>(ControlChannel.Json)
                   ?? new DestinationStatus(false, "", default);
        return kept with { Done = e.Stage == MigrationStage.Completed, Stage = e.Stage.ToString(), Note = e.Note, ResumedAtUnixMs = e.ResumedAtUnixMs };
    }

    /// <summary>'guidecopy abort': undoes this host's part if the migration is before its commit point here; says why not otherwise.</summary>
    private AbortResult Abort(AbortRequest req)
    {
        string id = req.MigrationId;
        if (_sources.TryGetValue(id, out var source))
        {
            source.Abort("aborted by an operator");
            _sources.TryRemove(id, out _);
            return new AbortResult(true, "rolled back: the source runs again");
        }

        if (_destinations.TryGetValue(id, out var destination))
        {
            destination.Abort("aborted by an operator", req.SourceRolledBack);
            _destinations.TryRemove(id, out _);
            return new AbortResult(true, "the destination copy was removed");
        }

        return Journal.Read(id) is { } e
            ? new AbortResult(false, $"migration {id} is {e.Stage} here: nothing to abort")
            : throw new AgentException($"no migration {id} on this host");
    }

    private List<JobInfo> Jobs()
    {
        var jobs = new List<JobInfo>();
        foreach (var e in Journal.ReadAll())
        {
            DestinationStatus? live = null;
            string? guide = null;
            if (e.Role == MigrationRole.Destination && _destinations.TryGetValue(e.Id, out var d))
            {
                try
                {
                    live = d.Status();
                }
                catch (AgentException)
                {
                }
            }
            else if (e.Role == MigrationRole.Destination)
            {
                live = e.Result?.Deserialize<DestinationStatus>(ControlChannel.Json);
            }

            if (e.Role == MigrationRole.Source && e.Result?["guide"] is JsonObject g)
            {
                guide = g["stopReason"]?.GetValue<string>();
            }

            jobs.Add(new JobInfo(e.Id, e.Role.ToString(), e.Domain, e.Stage.ToString(), e.StartedAt, e.UpdatedAt, e.Note,
                live?.Pages.DonePages ?? 0, live?.Pages.PageCount ?? 0, live?.Pages.Faults ?? 0, live?.Pages.BytesReceived ?? 0, live?.Pages.Reconnects ?? 0,
                Math.Round((live?.Pages.ElapsedMs ?? 0) / 1000, 1), guide, e.Result));
        }

        return jobs;
    }

    /// <summary>
    /// A new side for <paramref name="id"/>, refused if the id is in use here in either role or
    /// known to the journal: the live migration is never touched (a refused side never made
    /// its work directory, so its disposal removes nothing).
    /// </summary>
    private T Add<T>(ConcurrentDictionary<string, T> map, string id, Func<T> create) where T : IDisposable
    {
        MigrationJournal.CheckId(id);
        if (_sources.ContainsKey(id) || _destinations.ContainsKey(id) || Journal.Read(id) is not null)
        {
            throw new AgentException($"migration {id} is already known here: use a new id");
        }

        var side = create();
        if (!map.TryAdd(id, side) || (typeof(T) == typeof(SourceSide) ? _destinations.ContainsKey(id) : _sources.ContainsKey(id)))
        {
            map.TryRemove(new KeyValuePair<string, T>(id, side));
            side.Dispose();
            throw new AgentException($"migration {id} is already known here: use a new id");
        }

        Renew(id);
        return side;
    }

    private static T Get<T>(ConcurrentDictionary<string, T> map, string id) =>
        map.TryGetValue(id, out var v) ? v : throw new AgentException($"no migration {id} on this host");
}
