using System.Net;
using System.Net.Sockets;

namespace GuideCopy.Transport;

/// <summary>A page server's address as the agents, the journal and the tools write it: ADDR:PORT.</summary>
public static class LaneEndpoint
{
    /// <summary>Parses ADDR:PORT (IPv4, [IPv6]:PORT or a host name).</summary>
    public static IPEndPoint Parse(string text)
    {
        // IPEndPoint.TryParse accepts a bare address (port 0): require the port to be written.
        if (IPEndPoint.TryParse(text, out var ep) && (ep.Port != 0 || text.EndsWith(":0", StringComparison.Ordinal)))
            return ep;
        int colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text[(colon + 1)..], out int port)) throw new FormatException($"'{text}' is not ADDR:PORT");
        var addr = Dns.GetHostAddresses(text[..colon]).First(a => a.AddressFamily == AddressFamily.InterNetwork);
        return new IPEndPoint(addr, port);
    }
}
