using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using GuideCopy.Transport;

namespace GuideCopy.Migration.Control;

/// <summary>
/// The agent refused or failed a request (the message is the agent's own), or — with
/// <see cref="ConnectionLost"/> — could not be reached or went away mid-request.
/// </summary>
public sealed class AgentException(string message, bool connectionLost = false) : Exception(message)
{
    public bool ConnectionLost { get; } = connectionLost;
}

/// <summary>
/// The controller-to-agent channel: length-prefixed JSON messages (u32 little-endian length,
/// at most <see cref="MaxMessageBytes"/>) after a mutual shared-secret challenge-response, so
/// no unauthenticated peer can pause, start or destroy a domain. One request, one response.
/// Every message after the handshake is sealed with AEGIS-256 (<see cref="FrameSeal"/>, keys
/// from both nonces, <see cref="LaneKeys.DeriveControl"/>): the device state travels here, and
/// a forged or replayed request must not reach an agent. Before the handshake no message may
/// exceed <see cref="MaxHandshakeBytes"/>.
/// </summary>
public sealed class ControlChannel : IAsyncDisposable
{
    /// <summary>The largest message either side accepts (device state travels base64 inside one).</summary>
    public const int MaxMessageBytes = 64 * 1024 * 1024;

    /// <summary>The largest message before the peer is authenticated (the handshake's are ~200 bytes).</summary>
    public const int MaxHandshakeBytes = 1024;

    /// <summary>
    /// Bumped whenever a message changes shape, so two hosts with different builds refuse each other
    /// at the handshake instead of reading each other's fields as empty. 2: sealed channel;
    /// 3: counters nested by name (DestinationStatus.Pages, SourceFinishResult.Served);
    /// 4: the page packing asked for at arm (SourceArmRequest.Compression) and counted (PageServerCounters);
    /// 5: the bandwidth group at arm (SourceArmRequest.BandwidthGroup), the page size in PagerCounters;
    /// 6: the released commit (DestinationArmRequest.StartOnLoad, SwitchoverRequest.ReleaseCommit).
    /// </summary>
    public const int ProtocolVersion = 6;
    private static ReadOnlySpan<byte> ClientLabel => "GCv2-control-client"u8;
    private static ReadOnlySpan<byte> ServerLabel => "GCv2-control-server"u8;

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private const byte ControlMessageType = 0; // the one message type of this channel, in the seal's nonce
    private FrameSeal? _seal;

    private ControlChannel(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>Connects and authenticates to an agent; errors name the endpoint and what to fix.</summary>
    public static async Task<ControlChannel> ConnectAsync(AgentEndpoint endpoint, byte[] secret, CancellationToken ct)
    {
        Socket socket;
        try
        {
            socket = await endpoint.ConnectAsync(ct);
        }
        catch (SocketException e)
        {
            throw new AgentException($"agent at {endpoint} is unreachable ({e.SocketErrorCode}): {endpoint.UnreachableHint}", connectionLost: true);
        }

        var c = new ControlChannel(socket);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            var hello = await c.ReadAsync(timeout.Token);
            if (hello["hello"]?.GetValue<string>() != "guidecopy-agent")
            {
                throw new AgentException($"the peer at {endpoint} is not a guidecopy agent");
            }

            int version = hello["version"]?.GetValue<int>() ?? 0;
            if (version != ProtocolVersion)
            {
                throw new AgentException($"agent at {endpoint} speaks control protocol {version}, this controller {ProtocolVersion}: install the same guidecopy version on both");
            }

            byte[] snonce = Convert.FromBase64String(hello["nonce"]!.GetValue<string>());
            byte[] cnonce = RandomNumberGenerator.GetBytes(32);
            await c.WriteAsync(new JsonObject
            {
                ["nonce"] = Convert.ToBase64String(cnonce),
                ["proof"] = Convert.ToBase64String(Mac(secret, ClientLabel, snonce, cnonce)),
            }, timeout.Token);
            var welcome = await c.ReadAsync(timeout.Token);
            if (welcome["error"] is { } err)
            {
                throw new AgentException($"agent at {endpoint} refused us: {err.GetValue<string>()} (check that both sides use the same secret file)");
            }

            byte[] proof = Convert.FromBase64String(welcome["proof"]?.GetValue<string>() ?? "");
            if (!CryptographicOperations.FixedTimeEquals(proof, Mac(secret, ServerLabel, cnonce, snonce)))
            {
                throw new AgentException($"agent at {endpoint} could not prove it knows the secret");
            }

            c._seal = LaneKeys.DeriveControl(secret, cnonce, snonce, forClient: true);
            return c;
        }
        catch (Exception e) when (e is IOException or JsonException or FormatException or OperationCanceledException or InvalidOperationException)
        {
            await c.DisposeAsync();
            throw new AgentException($"agent at {endpoint}: handshake failed: {e.Message}");
        }
        catch
        {
            await c.DisposeAsync();
            throw;
        }
    }

    /// <summary>Agent side: authenticates a new client; false (and closed) when it cannot prove the secret.</summary>
    public static async Task<ControlChannel?> AcceptAsync(Socket socket, byte[] secret, CancellationToken ct)
    {
        var c = new ControlChannel(socket);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            byte[] snonce = RandomNumberGenerator.GetBytes(32);
            await c.WriteAsync(new JsonObject
            {
                ["hello"] = "guidecopy-agent",
                ["version"] = ProtocolVersion,
                ["nonce"] = Convert.ToBase64String(snonce),
            }, timeout.Token);
            var answer = await c.ReadAsync(timeout.Token);
            byte[] cnonce = Convert.FromBase64String(answer["nonce"]?.GetValue<string>() ?? "");
            byte[] proof = Convert.FromBase64String(answer["proof"]?.GetValue<string>() ?? "");
            if (cnonce.Length != 32 || !CryptographicOperations.FixedTimeEquals(proof, Mac(secret, ClientLabel, snonce, cnonce)))
            {
                await c.WriteAsync(new JsonObject { ["error"] = "authentication failed" }, timeout.Token);
                await c.DisposeAsync();
                return null;
            }

            await c.WriteAsync(new JsonObject { ["proof"] = Convert.ToBase64String(Mac(secret, ServerLabel, cnonce, snonce)) }, timeout.Token);
            c._seal = LaneKeys.DeriveControl(secret, cnonce, snonce, forClient: false);
            return c;
        }
        catch (Exception e) when (e is IOException or JsonException or FormatException or OperationCanceledException or InvalidOperationException or SocketException)
        {
            await c.DisposeAsync();
            return null;
        }
    }

    /// <summary>Sends a request and waits for its response; an agent-side failure becomes an <see cref="AgentException"/>.</summary>
    public async Task<TResult> CallAsync<TResult>(string op, object args, CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            await WriteAsync(new JsonObject { ["op"] = op, ["args"] = JsonSerializer.SerializeToNode(args, Json) }, ct);
            var reply = await ReadAsync(ct);
            if (reply["ok"]?.GetValue<bool>() != true)
            {
                throw new AgentException(reply["error"]?.GetValue<string>() ?? $"agent failed '{op}' without a reason");
            }

            return reply["result"].Deserialize<TResult>(Json) ?? throw new AgentException($"agent answered '{op}' with no result");
        }
        catch (IOException e)
        {
            throw new AgentException($"lost the agent during '{op}': {e.Message}", connectionLost: true);
        }
        finally
        {
            _lock.Release();
        }
    }

    public async Task<JsonObject> ReadAsync(CancellationToken ct)
    {
        byte[] header = new byte[4];
        await _stream.ReadExactlyAsync(header, ct);
        int length = BinaryPrimitives.ReadInt32LittleEndian(header);
        var seal = _seal;
        int max = seal is null ? MaxHandshakeBytes : MaxMessageBytes + FrameSeal.TagSize;
        if (length <= (seal is null ? 0 : FrameSeal.TagSize) || length > max)
        {
            throw new IOException($"control message of {length} bytes is out of bounds (max {max}{(seal is null ? " before authentication" : "")})");
        }

        byte[] body = new byte[length];
        await _stream.ReadExactlyAsync(body, ct);
        int plain = length;
        if (seal is not null)
        {
            plain = length - FrameSeal.TagSize;
            // The length prefix is covered by the tag (GCM authenticates the ciphertext's length).
            if (!seal.TryOpen(ControlMessageType, body))
            {
                throw new IOException("a control message failed authentication (altered, forged or replayed): connection closed");
            }
        }

        return JsonNode.Parse(body.AsSpan(0, plain)) as JsonObject ?? throw new JsonException("control message is not a JSON object");
    }

    public async Task WriteAsync(JsonObject message, CancellationToken ct)
    {
        byte[] json = Encoding.UTF8.GetBytes(message.ToJsonString(Json));
        if (json.Length > MaxMessageBytes)
        {
            throw new IOException($"control message of {json.Length} bytes is too large");
        }

        await _writeLock.WaitAsync(ct);
        try
        {
            var seal = _seal;
            int length = json.Length + (seal is null ? 0 : FrameSeal.TagSize);
            byte[] frame = new byte[4 + length];
            BinaryPrimitives.WriteInt32LittleEndian(frame, length);
            json.CopyTo(frame, 4);
            // The nonce is the message's number: sealed under the lock, in the order sent.
            seal?.Seal(ControlMessageType, frame.AsSpan(4), json.Length);
            await _stream.WriteAsync(frame, ct);
            await _stream.FlushAsync(ct);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private static byte[] Mac(byte[] secret, ReadOnlySpan<byte> label, byte[] first, byte[] second)
    {
        byte[] data = [.. label, .. first, .. second];
        return HMACSHA256.HashData(secret, data);
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
        _socket.Dispose();
        _lock.Dispose();
        _writeLock.Dispose();
    }
}
