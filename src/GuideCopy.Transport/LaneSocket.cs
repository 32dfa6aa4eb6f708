using System.Net.Sockets;

namespace GuideCopy.Transport;

/// <summary>
/// Socket settings that keep the two lanes from hurting each other where they share a link.
/// <list type="bullet">
/// <item>The demand lane is marked IPTOS_LOWDELAY, the push lane IPTOS_THROUGHPUT. Linux sets a
/// socket's skb priority from its TOS (ip_setsockopt IP_TOS -> rt_tos2priority): LOWDELAY is
/// TC_PRIO_INTERACTIVE, THROUGHPUT is TC_PRIO_BULK. pfifo_fast (the default qdisc where no
/// default_qdisc sysctl names another) puts them in bands 0 and 2 and always drains band 0 first,
/// so a demand page never queues behind up to a megabyte of pushed pages in the host's qdisc
/// (TCP small queues allow one socket ~1 MB there: tens of ms at 100 Mbit/s). The TOS bits also
/// travel in the IP header, for switches that honour them.</item>
/// <item>The push lane keeps at most <see cref="PushUnsentBytes"/> unsent in its socket
/// (TCP_NOTSENT_LOWAT: a blocking send waits until the unsent part is below it), so the push
/// order is decided just before the wire, not megabytes ahead of it.</item>
/// </list>
/// </summary>
public static class LaneSocket
{
    private const int IpTosLowDelay = 0x10;
    private const int IpTosThroughput = 0x08;
    private const int TcpNotSentLowAt = 25; // linux/tcp.h

    /// <summary>Unsent bytes the push lane may hold in its socket: four full Pages frames of 4 KiB pages.</summary>
    public const int PushUnsentBytes = 256 * 1024;

    public static void Tune(Socket socket, Lane lane)
    {
        try
        {
            if (socket.AddressFamily == AddressFamily.InterNetwork)
            {
                socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.TypeOfService, lane == Lane.Demand ? IpTosLowDelay : IpTosThroughput);
            }

            if (lane == Lane.Push)
            {
                socket.SetRawSocketOption((int)SocketOptionLevel.Tcp, TcpNotSentLowAt, BitConverter.GetBytes(PushUnsentBytes));
            }
        }
        catch (SocketException)
        {
            // Tuning only: a socket that refuses it still carries the pages, just with more queueing.
        }
    }
}
