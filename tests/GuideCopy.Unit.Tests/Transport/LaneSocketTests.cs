using System.Net.Sockets;
using GuideCopy.Transport;

namespace GuideCopy.Unit.Tests.Transport;

/// <summary>
/// The lanes' marks on a real socket: demand IPTOS_LOWDELAY (pfifo_fast's band 0, ahead of
/// everything), push unmarked (band 1, beside other tenants' streams). A push lane marked
/// IPTOS_THROUGHPUT (band 2) was starved for good by a neighbour that filled the link.
/// </summary>
public sealed class LaneSocketTests
{
    private static int TosAfterTune(Lane lane)
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        LaneSocket.Tune(s, lane);
        return (int)s.GetSocketOption(SocketOptionLevel.IP, SocketOptionName.TypeOfService)!;
    }

    [Test]
    public void DemandGoesFirstAndPushBesideTheNeighbours()
    {
        Assert.That(TosAfterTune(Lane.Demand), Is.EqualTo(0x10), "demand: IPTOS_LOWDELAY");
        Assert.That(TosAfterTune(Lane.Push), Is.EqualTo(0), "push: no TOS, not IPTOS_THROUGHPUT");
    }
}
