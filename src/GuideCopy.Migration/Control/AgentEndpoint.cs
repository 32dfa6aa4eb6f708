using System.Net;
using System.Net.Sockets;

namespace GuideCopy.Migration.Control;

/// <summary>
/// Where an agent's control channel listens: <c>unix:/path</c> (same host, or a lab host seen
/// through /proc/PID/root) or <c>tcp:host:port</c> (between real hosts).
/// </summary>
public sealed record AgentEndpoint(string? UnixPath, string? Host, int Port)
{
    public const int DefaultControlPort = 7170;

    public static AgentEndpoint Parse(string text)
    {
        if (text.StartsWith("unix:", StringComparison.Ordinal) && text.Length > 5)
        {
            return new AgentEndpoint(text[5..], null, 0);
        }

        if (text.StartsWith("tcp:", StringComparison.Ordinal))
        {
            string rest = text[4..];
            int colon = rest.LastIndexOf(':');
            if (colon > 0 && int.TryParse(rest[(colon + 1)..], out int port) && port is > 0 and < 65536)
            {
                return new AgentEndpoint(null, rest[..colon].Trim('[', ']'), port);
            }

            if (colon < 0 && rest.Length > 0)
            {
                return new AgentEndpoint(null, rest, DefaultControlPort);
            }
        }

        throw new FormatException($"agent endpoint '{text}' is not unix:/path or tcp:host[:port]");
    }

    public async Task<Socket> ConnectAsync(CancellationToken ct)
    {
        if (UnixPath is not null)
        {
            var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await s.ConnectAsync(new UnixDomainSocketEndPoint(UnixPath), ct);
                return s;
            }
            catch
            {
                s.Dispose();
                throw;
            }
        }

        var tcp = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await tcp.ConnectAsync(Host!, Port, ct);
            return tcp;
        }
        catch
        {
            tcp.Dispose();
            throw;
        }
    }

    public EndPoint ToEndPoint() => UnixPath is not null
        ? new UnixDomainSocketEndPoint(UnixPath)
        : new IPEndPoint(IPAddress.Parse(Host!), Port);

    /// <summary>What to check when nothing answers here: a TCP listener exists only where Agent:ControlListen was set (empty by default).</summary>
    public string UnreachableHint => UnixPath is not null
        ? "is 'guidecopy agent' running on this host (systemctl status guidecopy-agent)?"
        : $"is 'guidecopy agent' running on {Host}, with Agent:ControlListen set to an address of it and port {Port} " +
          $"(e.g. --set Agent:ControlListen={Host}:{Port} or GUIDECOPY__AGENT__CONTROLLISTEN)? It is empty by default: no TCP listener, " +
          "and the firewall must let the controller reach that port";

    public override string ToString() => UnixPath is not null ? $"unix:{UnixPath}" : $"tcp:{Host}:{Port}";
}
