using System.Diagnostics;
using GuideCopy.MemoryPlane;
using GuideCopy.Transport;

namespace GuideCopy.Unit.Tests.Transport;

/// <summary>
/// The page packer's choices (<see cref="PagePacker"/>): what it packs decodes through the one
/// codec to the same pages, it never sends a block that saves too little, and Auto packs where
/// the link is the limit and (apart from its probes) nowhere else.
/// </summary>
public class PagePackerTests
{
    private const int Run = 64 * 4096;

    /// <summary>Pages like a guest's: runs of repeated words with a changing word now and then.</summary>
    private static byte[] CompressiblePages()
    {
        var pages = new byte[Run];
        for (int i = 0; i < pages.Length; i += 8) BitConverter.TryWriteBytes(pages.AsSpan(i), i % 512 == 0 ? (long)((ulong)i * 0x9E3779B97F4A7C15) : 0x1234_5678L);
        return pages;
    }

    private static byte[] RandomPages()
    {
        var pages = new byte[Run];
        new Random(7).NextBytes(pages);
        return pages;
    }

    private static byte[] Buffer() => new byte[PagePacker.BufferSize(Run)];

    [Test]
    public void APackedRunDecodesToTheSamePagesThroughTheCodec()
    {
        var packer = new PagePacker(PageCompression.Lz4, 0);
        var pages = CompressiblePages();
        var frame = Buffer();
        const int room = Wire.HeaderSize + Wire.PagesHeaderSize;
        Assert.That(packer.TryPack(pages, frame.AsSpan(room), out int packed), Is.True);
        Assert.That(packed, Is.LessThan(Run - Run / PagePacker.MinSavingDivisor));

        FrameCodec.WritePagesHeader(frame.AsSpan(Wire.HeaderSize), 100, Run / 4096, PageOrigin.Push);
        var into = new byte[Wire.MaxBatchBytes];
        var h = FrameCodec.ReadPackedPages(frame.AsSpan(Wire.HeaderSize, Wire.PagesHeaderSize + packed), 4096, 1000, into);
        Assert.That((h.First, h.Count, h.Origin), Is.EqualTo((100L, Run / 4096, PageOrigin.Push)));
        Assert.That(into.AsSpan(0, Run).SequenceEqual(pages), Is.True, "the destination installs exactly the source's bytes");
    }

    [Test]
    public void ABlockThatDecodesToOtherThanCountPagesIsRefused()
    {
        var packer = new PagePacker(PageCompression.Lz4, 0);
        var frame = Buffer();
        const int room = Wire.HeaderSize + Wire.PagesHeaderSize;
        packer.TryPack(CompressiblePages(), frame.AsSpan(room), out int packed);
        // The header claims one page more than the block holds: the decode must not be trusted.
        FrameCodec.WritePagesHeader(frame.AsSpan(Wire.HeaderSize), 0, Run / 4096 + 1, PageOrigin.Push);
        var into = new byte[Wire.MaxBatchBytes];
        Assert.Throws<ProtocolException>(() => FrameCodec.ReadPackedPages(frame.AsSpan(Wire.HeaderSize, Wire.PagesHeaderSize + packed), 4096, 1000, into));
    }

    [Test]
    public void RandomPagesAreSentAsTheyAre()
    {
        var packer = new PagePacker(PageCompression.Lz4, 0);
        Assert.That(packer.TryPack(RandomPages(), Buffer(), out _), Is.False, "LZ4 cannot shorten random bytes by 1/8");
    }

    [Test]
    public void OffNeverPacks()
    {
        var packer = new PagePacker(PageCompression.Off, 1);
        for (int i = 0; i < 40; i++) Assert.That(packer.TryPack(CompressiblePages(), Buffer(), out _), Is.False);
    }

    [Test]
    public void AutoOnALinkThatKeepsUpPacksOnlyItsProbes()
    {
        var packer = new PagePacker(PageCompression.Auto, 0);
        var pages = CompressiblePages();
        var buffer = Buffer();
        // Sends that never waited for the link: no drain sample.
        packer.NoteSend(Run, 1);
        int packedRuns = Enumerable.Range(0, 64).Count(_ => packer.TryPack(pages, buffer, out _));
        Assert.That(packer.LinkBytesPerSecond, Is.Zero);
        Assert.That(packedRuns, Is.InRange(1, 64 / 16 + 1), "the first run measures, then one in 16 probes");
    }

    [Test]
    public void AutoNeverProbesOnADemandAnswerButPacksItWhereThatPays()
    {
        var packer = new PagePacker(PageCompression.Auto, 0);
        var page = CompressiblePages().AsSpan(0, 4096).ToArray();
        var buffer = Buffer();
        int probed = Enumerable.Range(0, 64).Count(_ => packer.TryPack(page, buffer, out _, mayProbe: false));
        Assert.That(probed, Is.Zero, "a fault never waits for a measurement");
        // A push run measured pack speed and ratio, and the link drains at 100 Mbit/s: a demand page packs too.
        packer.TryPack(CompressiblePages(), buffer, out _);
        packer.NoteSend(1 << 20, Stopwatch.Frequency * 80 / 1000);
        Assert.That(packer.TryPack(page, buffer, out _, mayProbe: false), Is.True);
    }

    [Test]
    public void AutoPacksEveryRunWhereTheLinkIsTheLimit()
    {
        var packer = new PagePacker(PageCompression.Auto, 0);
        var pages = CompressiblePages();
        var buffer = Buffer();
        packer.TryPack(pages, buffer, out _); // the first run measures pack speed and ratio
        // 1 MiB took 80 ms to hand to the socket: a 100 Mbit/s link, far below what LZ4 packs.
        packer.NoteSend(1 << 20, Stopwatch.Frequency * 80 / 1000);
        Assert.That(packer.LinkBytesPerSecond, Is.EqualTo(13_107_200).Within(1));
        int packedRuns = Enumerable.Range(0, 64).Count(_ => packer.TryPack(pages, buffer, out _));
        Assert.That(packedRuns, Is.EqualTo(64));
    }

    [Test]
    public void AutoTakesTheBandwidthCapAsTheLink()
    {
        var packer = new PagePacker(PageCompression.Auto, 1 << 20);
        var pages = CompressiblePages();
        var buffer = Buffer();
        Assert.That(packer.LinkBytesPerSecond, Is.EqualTo(1 << 20));
        int packedRuns = Enumerable.Range(0, 32).Count(_ => packer.TryPack(pages, buffer, out _));
        Assert.That(packedRuns, Is.EqualTo(32));
    }

    [Test]
    public void AutoWaitsForItsProbeToNoticePagesTurningCompressible()
    {
        var packer = new PagePacker(PageCompression.Auto, 1 << 20);
        var buffer = Buffer();
        var random = RandomPages();
        // Runs 1-64: random pages measure a ratio below 1, so even a slow link is not worth packing for.
        for (int i = 0; i < 64; i++) packer.TryPack(random, buffer, out _);
        var compressible = CompressiblePages();
        // Runs 65-79: no probe falls here, and the measured ratio says packing saves nothing.
        int packedBeforeProbe = Enumerable.Range(0, 15).Count(_ => packer.TryPack(compressible, buffer, out _));
        Assert.That(packedBeforeProbe, Is.Zero);
        // Run 80 is a probe: it packs and measures the new ratio, and from then on every run packs.
        Assert.That(packer.TryPack(compressible, buffer, out _), Is.True, "the probe");
        int packedAfter = Enumerable.Range(0, 8).Count(_ => packer.TryPack(compressible, buffer, out _));
        Assert.That(packedAfter, Is.EqualTo(8));
    }

    [Test]
    public void SentRunsAddUpToTheRatio()
    {
        var packer = new PagePacker(PageCompression.Lz4, 0);
        packer.Sent(8192, 1024, packed: true);
        packer.Sent(4096, 4096, packed: false);
        Assert.That((packer.DataBytes, packer.DataWireBytes, packer.PackedRuns), Is.EqualTo((12288L, 5120L, 1L)));
    }
}
