using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using GuideCopy.Transport;

namespace GuideCopy.Unit.Tests.Transport;

/// <summary>Every parser against hostile input: clean rejection, never a crash or a hang.</summary>
public class ParserTests
{
    private static ShimHello Sample => new(0x7f0000000000, 1 << 20, 4096, 0x1c, 0, 1234, 0, false, "/dev/shm/x/pc.ram");

    [Test]
    public void ShimHelloRoundTrips()
    {
        var buf = new byte[ShimHello.MaxMessage];
        int n = Sample.Encode(buf);
        Assert.That(ShimHello.TryParse(buf.AsSpan(0, n), out var h, out var err), Is.True, err);
        Assert.That(h, Is.EqualTo(Sample));
    }

    [TestCase(0, "short")]
    [TestCase(63, "short")]
    public void ShimHelloRejectsTruncated(int length, string why)
    {
        var buf = new byte[ShimHello.MaxMessage];
        Sample.Encode(buf);
        Assert.That(ShimHello.TryParse(buf.AsSpan(0, length), out _, out var err), Is.False);
        Assert.That(err, Is.Not.Empty);
    }

    [TestCase(0, 0xdeadbeefu, Description = "magic")]
    [TestCase(4, 2u, Description = "version")]
    [TestCase(24, 4095u, Description = "page size not a power of two")]
    [TestCase(16, 4097u, Description = "length not page multiple")]
    [TestCase(8, 0x1001u, Description = "base unaligned")]
    [TestCase(52, 0xffffffffu, Description = "path length huge")]
    [TestCase(48, 0u, Description = "pid 0")]
    public void ShimHelloRejectsField(int offset, uint value)
    {
        var buf = new byte[ShimHello.MaxMessage];
        int n = Sample.Encode(buf);
        if (offset is 16 or 8 or 24) BinaryPrimitives.WriteUInt64LittleEndian(buf.AsSpan(offset), value);
        else BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(offset), value);
        Assert.That(ShimHello.TryParse(buf.AsSpan(0, n), out _, out var err), Is.False);
        TestContext.Out.WriteLine(err);
    }

    [Test]
    public void ShimHelloSurvivesRandomBytes()
    {
        var rng = new Random(42);
        var buf = new byte[ShimHello.MaxMessage + 100];
        for (int i = 0; i < 20000; i++)
        {
            int n = rng.Next(buf.Length);
            rng.NextBytes(buf.AsSpan(0, n));
            if (i % 2 == 0 && n >= 4) BinaryPrimitives.WriteUInt32LittleEndian(buf, ShimHello.Magic);
            Assert.DoesNotThrow(() => ShimHello.TryParse(buf.AsSpan(0, n), out _, out _));
        }
    }

    private static (FrameConnection reader, Socket writer) Pair(bool authenticated = false)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var writer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        writer.Connect(listener.LocalEndPoint!);
        return (new FrameConnection(listener.Accept(), 2000) { Authenticated = authenticated }, writer);
    }

    private static byte[] Header(ushort magic, byte type, byte reserved, uint length)
    {
        var h = new byte[8];
        BinaryPrimitives.WriteUInt16LittleEndian(h, magic);
        h[2] = type;
        h[3] = reserved;
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(4), length);
        return h;
    }

    [TestCase((ushort)0x1234, (byte)FrameType.Heartbeat, (byte)0, 0u, Description = "bad magic")]
    [TestCase(Wire.Magic, (byte)200, (byte)0, 0u, Description = "unknown type")]
    [TestCase(Wire.Magic, (byte)FrameType.Heartbeat, (byte)1, 0u, Description = "reserved byte")]
    [TestCase(Wire.Magic, (byte)FrameType.Heartbeat, (byte)0, 1u, Description = "heartbeat with payload")]
    [TestCase(Wire.Magic, (byte)FrameType.Demand, (byte)0, 0x7fffffffu, Description = "huge demand")]
    [TestCase(Wire.Magic, (byte)FrameType.Pages, (byte)0, 0xffffffffu, Description = "huge pages")]
    [TestCase(Wire.Magic, (byte)FrameType.ZeroMap, (byte)0, 0xffffffffu, Description = "huge bitmap")]
    public void FrameHeaderRejected(ushort magic, byte type, byte reserved, uint length)
    {
        var (reader, writer) = Pair(authenticated: true);
        using (reader)
        using (writer)
        {
            writer.Send(Header(magic, type, reserved, length));
            var e = Assert.Throws<ProtocolException>(() => reader.ReadFrame());
            TestContext.Out.WriteLine(e!.Message);
        }
    }

    [Test]
    public void BigFrameBeforeAuthenticationIsRefusedWithoutAllocating()
    {
        var (reader, writer) = Pair();
        using (reader)
        using (writer)
        {
            writer.Send(Header(Wire.Magic, (byte)FrameType.Resume, 0, 200u << 20));
            long before = GC.GetAllocatedBytesForCurrentThread();
            Assert.That(Assert.Throws<ProtocolException>(() => reader.ReadFrame())!.Message, Does.Contain("before authentication"));
            Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(1 << 20));
        }
    }

    [Test]
    public void TruncatedFrameIsLinkLossNotCrash()
    {
        var (reader, writer) = Pair();
        using (reader)
        {
            writer.Send(Header(Wire.Magic, (byte)FrameType.Demand, 0, 100));
            writer.Send(new byte[10]);
            writer.Dispose();
            Assert.Throws<EndOfStreamException>(() => reader.ReadFrame());
        }
    }

    [Test]
    public void PeerErrorFrameBecomesProtocolException()
    {
        var (reader, writer) = Pair();
        using (reader)
        using (writer)
        {
            var msg = "nope"u8.ToArray();
            writer.Send(Header(Wire.Magic, (byte)FrameType.Error, 0, (uint)msg.Length));
            writer.Send(msg);
            Assert.That(Assert.Throws<ProtocolException>(() => reader.ReadFrame())!.Message, Does.Contain("nope"));
        }
    }

    [Test]
    public void BitmapRoundTripAndNextClear()
    {
        var b = new PageBitmap(130);
        Assert.That(b.TrySet(0), Is.True);
        Assert.That(b.TrySet(0), Is.False);
        b.SetRange(64, 66);
        Assert.That(b.Count, Is.EqualTo(67));
        Assert.That(b.NextClear(0), Is.EqualTo(1));
        Assert.That(b.NextClear(64), Is.EqualTo(-1));
        var bytes = new byte[b.ByteLength];
        b.CopyTo(bytes);
        var c = new PageBitmap(130);
        c.ResetTo(bytes);
        Assert.That(c.Count, Is.EqualTo(67));
        Assert.That(c.IsSet(129) && c.IsSet(0) && !c.IsSet(1), Is.True);
        Assert.Throws<InvalidDataException>(() => c.ResetTo(new byte[3]));
    }

    [Test]
    public void HistogramPercentiles()
    {
        var h = new FaultHistogram();
        for (int i = 1; i <= 1000; i++) h.RecordMicros(i);
        Assert.That(h.Percentile(0.5).TotalMicroseconds, Is.InRange(480, 580));
        Assert.That(h.Percentile(0.99).TotalMicroseconds, Is.InRange(950, 1000));
        Assert.That(h.Max.TotalMicroseconds, Is.EqualTo(1000));
    }

    [Test]
    public void ZeroMapFindsHolesAndZeroData()
    {
        string path = $"/dev/shm/gcmp-zeromap-{Environment.ProcessId}";
        try
        {
            using (var f = new FileStream(path, FileMode.Create))
            {
                f.SetLength(16 * 4096);
                f.Position = 2 * 4096; f.Write(new byte[4096]);           // explicit zero page
                f.Position = 5 * 4096 + 100; f.WriteByte(7);              // data page
            }
            using var ram = new FrozenRam(path);
            // Up front: holes only (pages 2 and 5 are data); the full scan also finds page 2.
            Assert.That(ram.ZeroPages.Count, Is.EqualTo(14));
            Assert.That(ram.ZeroPages.IsSet(2) || ram.ZeroPages.IsSet(5), Is.False);
            using var f2 = File.OpenHandle(path);
            var full = ZeroMap.Scan(f2, 16 * 4096, 4096);
            Assert.That(full.Count, Is.EqualTo(15));
            Assert.That(full.IsSet(2) && !full.IsSet(5), Is.True);
        }
        finally { File.Delete(path); }
    }
}
