using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using GuideCopy.Migration.Control;
using LibvirtSharp;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// The per-host agent: accepts authenticated control connections (UNIX socket, optionally TCP)
/// and runs this host's part of each migration — as a source (<see cref="SourceSide"/>) or a
/// destination (<see cref="DestinationSide"/>). Requests on one connection run in order;
/// connections run concurrently.
/// </summary>
public sealed class AgentServer
{
    private readonly AgentOptions _options;
    private readonly byte[] _secret;
    private readonly Action<string> _log;
    private readonly ConcurrentDictionary<string, SourceSide> _sources = new();
    private readonly ConcurrentDictionary<string, DestinationSide> _destinations = new();

    public AgentServer(AgentOptions options, Action<string> log)
    {
        _options = options;
        _log = log;
        _secret = ReadSecret(options.SecretFile);
    }

    public static byte[] ReadSecret(string path)
    {
        if (!File.Exists(path))
        {
            throw new AgentException($"secret file {path} does not exist: create it with 'head -c 32 /dev/urandom | base64 > {path}; chmod 600 {path}' and copy it to every host");
        }

        var text = File.ReadAllText(path).Trim();
        if (text.Length < 16)
        {
            throw new AgentException($"secret file {path} holds fewer than 16 characters: use a longer secret");
        }

        return System.Text.Encoding.UTF8.GetBytes(text);
    }

    public async Task RunAsync(CancellationToken ct)
    {
        Directory.CreateDirectory(_options.WorkDir);
        // QEMU (user libvirt-qemu) creates and connects sockets under the work directory.
        File.SetUnixFileMode(_options.WorkDir, (UnixFileMode)0b111_111_111 | UnixFileMode.StickyBit);
        foreach (var dir in Directory.GetDirectories(_options.WorkDir))
        {
            if (DestinationSide.Recover(_options, _secret, dir, _log) is { } recovered)
            {
                _destinations[Path.GetFileName(dir)] = recovered;
            }
        }

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
            foreach (var d in _destinations.Values)
            {
                d.Dispose();
            }

            foreach (var s in _sources.Values)
            {
                s.Dispose();
            }
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

            _ = Task.Run(() => Serve(conn, ct), ct);
        }
    }

    private async Task Serve(Socket conn, CancellationToken ct)
    {
        await using var channel = await ControlChannel.AcceptAsync(conn, _secret, ct);
        if (channel is null)
        {
            _log("refused a control connection: it did not prove the shared secret");
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
                return; // controller went away; sessions it left are aborted by their own timeouts or by 'abort'
            }

            string op = request["op"]?.GetValue<string>() ?? "";
            JsonNode? args = request["args"];
            JsonObject reply;
            try
            {
                object result = await Dispatch(op, args, ct);
                reply = new JsonObject { ["ok"] = true, ["result"] = JsonSerializer.SerializeToNode(result, ControlChannel.Json) };
            }
            catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                string message = e is LibvirtException le ? $"libvirt: {le.LibvirtMessage}" : e.Message;
                _log($"{op} failed: {message}");
                reply = new JsonObject { ["ok"] = false, ["error"] = message };
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

    private async Task<object> Dispatch(string op, JsonNode? args, CancellationToken ct)
    {
        switch (op)
        {
            case "facts":
                return HostFactsReader.Read(_options);
            case "dest.check":
                return DestinationSide.Check(_options, Args<DestinationCheckRequest>(args));
            case "source.prepare":
                return SourceSide.Prepare(_options, Args<DomainRequest>(args).Domain);
            case "source.guide.prepare":
            {
                var req = Args<GuidePrepareRequest>(args);
                var side = new SourceSide(_options, _secret, req.MigrationId, _log);
                if (!_sources.TryAdd(req.MigrationId, side))
                {
                    side.Dispose();
                    throw new AgentException($"migration {req.MigrationId} is already running here");
                }

                try
                {
                    return await side.PrepareGuideAsync(req, ct);
                }
                catch
                {
                    _sources.TryRemove(req.MigrationId, out _);
                    side.Dispose();
                    throw;
                }
            }

            case "source.switchover":
            {
                var req = Args<SwitchoverRequest>(args);
                var side = _sources.GetOrAdd(req.MigrationId, id => new SourceSide(_options, _secret, id, _log));

                try
                {
                    return await side.SwitchoverAsync(req, ct);
                }
                catch
                {
                    _sources.TryRemove(req.MigrationId, out _);
                    side.Dispose();
                    throw;
                }
            }

            case "source.finish":
                return Take(_sources, Args<MigrationRequest>(args).MigrationId).Finish();
            case "source.abort":
            {
                var id = Args<MigrationRequest>(args).MigrationId;
                if (_sources.TryRemove(id, out var side))
                {
                    side.Abort();
                }

                return new Empty();
            }

            case "dest.prepare":
            {
                var req = Args<DestinationPrepareRequest>(args);
                var side = new DestinationSide(_options, _secret, req.MigrationId, _log);
                if (!_destinations.TryAdd(req.MigrationId, side))
                {
                    side.Dispose();
                    throw new AgentException($"migration {req.MigrationId} is already running here");
                }

                try
                {
                    return await side.PrepareAsync(req, ct);
                }
                catch
                {
                    _destinations.TryRemove(req.MigrationId, out _);
                    side.Abort();
                    throw;
                }
            }

            case "dest.load":
            {
                var req = Args<DestinationLoadRequest>(args);
                try
                {
                    return await Get(_destinations, req.MigrationId).LoadAsync(req, ct);
                }
                catch
                {
                    if (_destinations.TryRemove(req.MigrationId, out var side))
                    {
                        side.Abort();
                    }

                    throw;
                }
            }

            case "dest.resume":
                return Get(_destinations, Args<MigrationRequest>(args).MigrationId).Resume();
            case "dest.status":
                return Get(_destinations, Args<MigrationRequest>(args).MigrationId).Status();
            case "dest.finish":
            {
                var req = Args<DestinationFinishRequest>(args);
                return await Take(_destinations, req.MigrationId).FinishAsync(req.PersistentXml, ct);
            }

            case "dest.abort":
            {
                var id = Args<MigrationRequest>(args).MigrationId;
                if (_destinations.TryRemove(id, out var side))
                {
                    side.Abort();
                }

                return new Empty();
            }

            default:
                throw new AgentException($"unknown request '{op}'");
        }
    }

    private static T Get<T>(ConcurrentDictionary<string, T> map, string id) =>
        map.TryGetValue(id, out var v) ? v : throw new AgentException($"no migration {id} on this host");

    private static T Take<T>(ConcurrentDictionary<string, T> map, string id) =>
        map.TryRemove(id, out var v) ? v : throw new AgentException($"no migration {id} on this host");
}
