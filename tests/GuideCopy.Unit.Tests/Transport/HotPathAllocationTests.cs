using System.Buffers.Binary;
using GuideCopy.MemoryPlane;
using GuideCopy.Transport;

namespace GuideCopy.Unit.Tests.Transport;

/// <summary>
/// "No per-page allocation on hot paths", checked: the per-page and per-frame operations that
/// bench/GuideCopy.Benchmarks times (seal and open, the codec's checks, the zero test, the
/// bitmaps, the push order) allocate nothing once warm. A regression here (a closure, a boxed
/// enum, a LINQ call slipped into one of them) fails this test before any benchmark is read.
/// </summary>
public class HotPathAllocationTests
{
    private const int Rounds = 10_000;
    private const long PageCount = 1L << 17;

    private static long AllocatedBy(Action once)
    {
        for (int i = 0; i < 100; i++) once(); // JIT tiering and first-call caches
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Rounds; i++) once();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    [Test]
    public void SealingAndOpeningAPageFrameAllocatesNothing()
    {
        var a = new byte[FrameSeal.KeySize];
        var b = new byte[FrameSeal.KeySize];
        Random.Shared.NextBytes(a);
        Random.Shared.NextBytes(b);
        using var sender = new FrameSeal(a, b);
        using var receiver = new FrameSeal(b, a);
        var frame = GC.AllocateArray<byte>(Wire.PagesHeaderSize + 4096 + FrameSeal.TagSize, pinned: true);
        int payload = frame.Length - FrameSeal.TagSize;
        bool opened = true;
        long bytes = AllocatedBy(() =>
        {
            sender.Seal((byte)FrameType.Pages, frame, payload);
            opened &= receiver.TryOpen((byte)FrameType.Pages, frame);
        });
        Assert.That(opened, Is.True, "every sealed frame opens on the other side");
        Assert.That(bytes, Is.Zero, $"{bytes} bytes over {Rounds} frames");
    }

    [Test]
    public void CodecChecksAllocateNothing()
    {
        var header = new byte[8];
        var pages = new byte[Wire.PagesHeaderSize + 4 * 4096];
        BinaryPrimitives.WriteUInt16LittleEndian(header, Wire.Magic);
        header[2] = (byte)FrameType.Pages;
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), (uint)(pages.Length + FrameSeal.TagSize));
        long[] demanded = [1, 2, 99, PageCount - 1];
        var demand = new byte[FrameCodec.DemandSize(demanded.Length)];
        long sum = 0;
        long bytes = AllocatedBy(() =>
        {
            sum += FrameCodec.ReadHeader(header, 4096, authenticated: true, isSealed: true).Length;
            FrameCodec.WritePagesHeader(pages, 7, 4, PageOrigin.Demand);
            sum += FrameCodec.ReadPages(pages, 4096, PageCount).Count;
            FrameCodec.WriteDemand(demand, demanded);
            for (int i = 0; i < FrameCodec.ReadDemandCount(demand); i++) sum += FrameCodec.DemandPage(demand, i, PageCount);
        });
        Assert.That(sum, Is.GreaterThan(0));
        Assert.That(bytes, Is.Zero, $"{bytes} bytes over {Rounds} rounds");
    }

    [Test]
    public void ZeroTestBitmapsAndPushOrderAllocateNothing()
    {
        var page = new byte[4096];
        var sent = new PageBitmap(PageCount);
        var order = new PushOrder(PageCount);
        var one = new long[1];
        long next = 0, found = 0;
        long bytes = AllocatedBy(() =>
        {
            if (ZeroMap.IsZero(page)) found++;
            sent.TrySet(next & (PageCount - 1));
            found += sent.NextClear(next & (PageCount - 1)) >= 0 ? 1 : 0;
            one[0] = next++ & (PageCount - 1);
            order.EnqueuePush(one);
            order.NoteDemand(one[0], predictedAt: -1);
            if (order.TryNext(out long p, out _)) found += p >= 0 ? 1 : 0;
        });
        Assert.That(found, Is.GreaterThan(0));
        Assert.That(bytes, Is.Zero, $"{bytes} bytes over {Rounds} rounds");
    }

    [Test]
    public void PackingAndUnpackingAPageAllocateNothing()
    {
        var packer = new PagePacker(PageCompression.Lz4, 0);
        var page = new byte[4096];
        for (int i = 0; i < page.Length; i++) page[i] = (byte)(i / 64);
        var frame = new byte[PagePacker.BufferSize(4096)];
        var into = new byte[4096];
        const int room = Wire.HeaderSize + Wire.PagesHeaderSize;
        FrameCodec.WritePagesHeader(frame.AsSpan(Wire.HeaderSize), 1, 1, PageOrigin.Demand);
        long decoded = 0;
        long bytes = AllocatedBy(() =>
        {
            if (!packer.TryPack(page, frame.AsSpan(room), out int packed)) return;
            packer.Sent(page.Length, packed, packed: true);
            decoded += FrameCodec.ReadPackedPages(frame.AsSpan(Wire.HeaderSize, Wire.PagesHeaderSize + packed), 4096, PageCount, into).Count;
        });
        Assert.That(decoded, Is.GreaterThan(0));
        Assert.That(bytes, Is.Zero, $"{bytes} bytes over {Rounds} rounds");
    }
}
