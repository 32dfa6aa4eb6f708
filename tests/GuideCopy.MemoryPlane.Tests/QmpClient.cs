using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>A minimal QMP client for the tests' plain QEMU processes (events are skipped).</summary>
public sealed class QmpClient : IDisposable
{
    private readonly Socket _socket;
    private readonly StreamReader _reader;
    private readonly NetworkStream _stream;

    public QmpClient(string path, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try { _socket.Connect(new UnixDomainSocketEndPoint(path)); break; }
            catch (SocketException) when (DateTime.UtcNow < deadline) { _socket.Dispose(); Thread.Sleep(200); }
        }
        _stream = new NetworkStream(_socket, ownsSocket: true);
        _reader = new StreamReader(_stream, Encoding.UTF8);
        _reader.ReadLine(); // greeting
        Execute("qmp_capabilities");
    }

    public JsonNode? Execute(string command, JsonObject? arguments = null)
    {
        var msg = new JsonObject { ["execute"] = command };
        if (arguments is not null) msg["arguments"] = arguments;
        var bytes = Encoding.UTF8.GetBytes(msg.ToJsonString() + "\n");
        _stream.Write(bytes);
        while (true)
        {
            var line = _reader.ReadLine() ?? throw new IOException("QMP closed");
            var node = JsonNode.Parse(line)!;
            if (node["event"] is not null) continue;
            if (node["error"] is { } e) throw new InvalidOperationException($"QMP {command}: {e.ToJsonString()}");
            return node["return"];
        }
    }

    /// <summary>Polls query-migrate until status is completed (or failed).</summary>
    public void WaitMigration(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            var status = Execute("query-migrate")?["status"]?.GetValue<string>();
            if (status == "completed") return;
            if (status is "failed" or "cancelled") throw new InvalidOperationException("migration " + status + ": " + Execute("query-migrate")!.ToJsonString());
            Thread.Sleep(100);
        }
        throw new TimeoutException("migration did not complete");
    }

    public void Dispose() => _stream.Dispose();
}
