using System.Net.Sockets;

namespace GuideCopy.Transport;

/// <summary>
/// Socket settings that keep the two lanes from hurting each other where they share a link.
/// <list type="bullet">
/// <item>The demand lane is marked IPTOS_LOWDELAY, the push lane nothing. Linux sets a socket's
/// skb priority from its TOS (ip_setsockopt IP_TOS -> rt_tos2priority): LOWDELAY is
/// TC_PRIO_INTERACTIVE, no TOS TC_PRIO_BESTEFFORT. pfifo_fast (the default qdisc where no
/// default_qdisc sysctl names another) puts them in bands 0 and 1 and always drains band 0 first,
/// so a demand page never queues behind the pushed pages in the host's qdisc (TCP small
/// queues allow one socket tcp_limit_output_bytes there, see below). The push lane is not
/// IPTOS_THROUGHPUT (TC_PRIO_BULK, band 2): band 1 is drained before it, so another tenant's
/// unmarked stream that fills the link starved every push lane of an evacuation for good
/// (measured: four migrations committed, then no pushed page for 7 minutes while the lanes timed
/// out and reconnected every 3 s, and none could finish). In band 1 the push shares the link with
/// the neighbours TCP's way, under the migration's own budget. The TOS bits also travel in the
/// IP header, for switches that honour them.</item>
/// <item>The push lane keeps at most <see cref="PushUnsentBytes"/> unsent in its socket
/// (TCP_NOTSENT_LOWAT: a blocking send waits until the unsent part is below it), so the push
/// order is decided just before the wire, not megabytes ahead of it.</item>
/// <item>Under a bandwidth cap the push lane is also paced by the kernel (SO_MAX_PACING_RATE:
/// TCP's internal pacing releases packets at that rate), so pushed pages do not pile up in the
/// host's queue in front of a slower link: TCP small queues alone let one socket keep
/// tcp_limit_output_bytes there (net.ipv4.tcp_limit_output_bytes; docs/tuning.md), and every
/// page in that queue was chosen that long before the destination gets it.</item>
/// </list>
/// </summary>
public static class LaneSocket
{
    private const int IpTosLowDelay = 0x10;
    private const int IpTosBestEffort = 0x00;
    private const int TcpNotSentLowAt = 25; // linux/tcp.h

    /// <summary>Unsent bytes the push lane may hold in its socket: a few ms of a capped link (docs/tuning.md).</summary>
    public const int PushUnsentBytes = 128 * 1024;

    private const int SoMaxPacingRate = 47; // asm-generic/socket.h

    /// <summary>Paces the push lane at <paramref name="bytesPerSecond"/> in the kernel (no-op for 0).</summary>
    public static void Pace(Socket socket, long bytesPerSecond)
    {
        if (bytesPerSecond <= 0)
        {
            return;
        }

        try
        {
            // A 64-bit value: the kernel takes an unsigned long when optlen allows it.
            socket.SetRawSocketOption((int)SocketOptionLevel.Socket, SoMaxPacingRate, BitConverter.GetBytes((ulong)bytesPerSecond));
        }
        catch (SocketException)
        {
            // Pacing is an optimisation; the application's own throttle still holds the cap.
        }
    }

    public static void Tune(Socket socket, Lane lane)
    {
        try
        {
            if (socket.AddressFamily == AddressFamily.InterNetwork)
            {
                socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.TypeOfService, lane != Lane.Push ? IpTosLowDelay : IpTosBestEffort);
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
