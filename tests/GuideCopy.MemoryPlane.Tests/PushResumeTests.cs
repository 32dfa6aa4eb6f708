using System.Buffers.Binary;
using System.Net.Sockets;
using GuideCopy.Transport;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>
/// A push lane that dies after announcing zero pages: the destination never got those
/// announcements, so the next push lane must announce them again (a real PageServer on loopback,
/// the destination's side of the wire played by the test).
/// </summary>
public class PushResumeTests
{
    private const int Pages = 64;
    private static readonly byte[] Secret = "resume secret"u8.ToArray();
    private LoopbackPageServer _source = null!;

    [SetUp]
    public void SetUp()
    {
        string file = $"/dev/shm/gcmp-resume-{Environment.ProcessId}";
        using (var f = new FileStream(file, FileMode.Create))
        {
            f.SetLength(Pages * 4096);
            // Page 1 holds data; pages 2..9 are written zeros: data extents on tmpfs (not holes),
            // so the source finds them zero only when it reads them, on the fly.
            f.Position = 4096;
            f.Write(Enumerable.Repeat((byte)0xab, 4096).ToArray());
            f.Write(new byte[8 * 4096]);
        }

        _source = new LoopbackPageServer(file, Secret);
    }

    [TearDown]
    public void TearDown() => _source.Dispose();

    /// <summary>Opens a push lane resuming from <paramref name="present"/>; returns the pages announced zero and sent, until Complete.</summary>
    private (HashSet<long> Zero, HashSet<long> Sent) PushLane(HashSet<long> present)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Connect(_source.Server.LocalEndPoint);
        using var lane = new FrameConnection(s, 2000);
        Handshake.Client(lane, Lane.Push, Secret);
        var have = new PageBitmap(Pages);
        foreach (long p in present) have.TrySet(p);
        lane.Send(FrameType.Resume, FrameCodec.EncodeBitmap(have));
        var zero = new HashSet<long>();
        var sent = new HashSet<long>();
        var unpacked = new byte[Wire.MaxBatchBytes];
        FrameType t;
        while ((t = lane.ReadFrame()) != FrameType.Complete)
        {
            if (t == FrameType.Heartbeat) continue;
            // Data pages come as they are or LZ4-packed (the source's auto policy probes push runs): the pager takes both.
            var h = t switch
            {
                FrameType.ZeroPages => FrameCodec.ReadZeroPages(lane.Payload, Pages),
                FrameType.PackedPages => FrameCodec.ReadPackedPages(lane.Payload, 4096, Pages, unpacked),
                _ => FrameCodec.ReadPages(lane.Payload, 4096, Pages),
            };
            for (long p = h.First; p < h.First + h.Count; p++) (t == FrameType.ZeroPages ? zero : sent).Add(p);
        }

        return (zero, sent);
    }

    [Test]
    public void ZeroPagesAnnouncedOnALaneThatDiedAreAnnouncedAgain()
    {
        var holes = Enumerable.Range(0, Pages).Select(i => (long)i).Where(p => p == 0 || p >= 10).ToHashSet();
        var first = PushLane(holes);
        Assert.That(first.Sent, Is.EquivalentTo(new long[] { 1 }));
        Assert.That(first.Zero, Is.EquivalentTo(Enumerable.Range(2, 8).Select(i => (long)i)));

        // The destination got page 1 but none of the announcements before that lane died.
        var second = PushLane([.. holes, 1]);
        Assert.That(second.Zero, Is.EquivalentTo(Enumerable.Range(2, 8).Select(i => (long)i)),
            "zero pages the destination never heard of must be announced again, or it waits for them forever");
        Assert.That(second.Sent, Is.Empty);
    }
}
