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
/// The agent's control channel: the listeners (UNIX socket, optionally TCP), the handshake
/// that proves the shared secret, and each connection's requests in order, each answered by
/// <paramref name="answer"/> (the role contract, through <see cref="AgentDispatch"/>).
/// Connections run concurrently.
/// </summary>
internal sealed class ControlConnections(
    AgentOptions options, byte[] secret, AgentLog log, ControllerLeases leases, Func<string, JsonNode?, CancellationToken, Task<object>> answer)
{
    private readonly AgentOptions _options = options;
    private readonly byte[] _secret = secret;
    private readonly AgentLog _lines = log;
    private readonly Action<string> _log = log;
    private readonly List<Socket> _listeners = new();

    /// <summary>Control connections still in their handshake: a peer without the secret holds at most these, each for at most the handshake's 10 s.</summary>
    private const int MaxUnauthenticatedControl = 8;
    private int _handshaking;

    public void Open()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(_options.ControlSocket)!);
        File.Delete(_options.ControlSocket);
        var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        unix.Bind(new UnixDomainSocketEndPoint(_options.ControlSocket));
        File.SetUnixFileMode(_options.ControlSocket, (UnixFileMode)0b110_000_000);
        unix.Listen(16);
        _listeners.Add(unix);
        _log($"control channel on unix:{_options.ControlSocket}");
        if (_options.ControlListen.Length > 0)
        {
            var tcp = new Socket(SocketType.Stream, ProtocolType.Tcp);
            tcp.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            tcp.Bind(IPEndPoint.Parse(_options.ControlListen));
            tcp.Listen(16);
            _listeners.Add(tcp);
            _log($"control channel on tcp:{_options.ControlListen}");
        }
    }

    /// <summary>Accepts on every listener until <paramref name="ct"/> is cancelled.</summary>
    public Task ServeAsync(CancellationToken ct) => Task.WhenAll(_listeners.Select(l => AcceptLoop(l, ct)));

    public void Close()
    {
        foreach (var l in _listeners)
        {
            l.Dispose();
        }

        File.Delete(_options.ControlSocket);
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

            var (op, reply) = await AnswerAsync(request, ct);
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

    /// <summary>One request's reply, failed or not; the migration it names keeps its lease while it runs.</summary>
    private async Task<(string Op, JsonObject Reply)> AnswerAsync(JsonObject request, CancellationToken ct)
    {
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
                leases.RequestStarted(id);
            }

            object result = await answer(op, request["args"], ct);
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
                leases.RequestEnded(id);
            }
        }

        return (op, reply);
    }
}
