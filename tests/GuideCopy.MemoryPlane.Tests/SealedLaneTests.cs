using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using GuideCopy.Transport;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>
/// Sealed frames over real loopback sockets: what the page server writes is unreadable, and a
/// frame whose header, payload or tag was changed, a forged one and a replayed one do not open.
/// The bytes in between travel through the test's hands as a man in the middle's would.
/// </summary>
public class SealedLaneTests
{
    private static readonly byte[] Key = LaneKeys.ForMigration("secret"u8, "m1");
    private static readonly SessionInfo Session = new(4096, 64, 0x1234);

    /// <summary>A sender lane whose bytes we read raw, and a receiver lane we write raw bytes to; keys as after a handshake.</summary>
    private sealed class Wiretap : IDisposable
    {
        public readonly FrameConnection Sender, Receiver;
        public readonly Socket SentBytes, ReceiverInput;

        public Wiretap(LaneProtection protection = LaneProtection.Sealed)
        {
            (var a, SentBytes) = Pair();
            (ReceiverInput, var b) = Pair();
            Sender = new FrameConnection(a, 2000) { Authenticated = true };
            Receiver = new FrameConnection(b, 2000) { Authenticated = true };
            if (protection == LaneProtection.Sealed)
            {
                byte[] cn = new byte[32], sn = new byte[32];
                cn[0] = 1; sn[0] = 2;
                Sender.StartSealing(LaneKeys.Derive(Key, Lane.Push, cn, sn, Session, forClient: false));
                Receiver.StartSealing(LaneKeys.Derive(Key, Lane.Push, cn, sn, Session, forClient: true));
            }
        }

        /// <summary>The next whole frame the sender wrote.</summary>
        public byte[] Capture()
        {
            var header = new byte[Wire.HeaderSize];
            ReadExactly(SentBytes, header);
            var frame = new byte[Wire.HeaderSize + BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4))];
            header.CopyTo(frame, 0);
            ReadExactly(SentBytes, frame.AsSpan(Wire.HeaderSize));
            return frame;
        }

        public void Deliver(byte[] frame) => ReceiverInput.Send(frame);

        public void Dispose()
        {
            Sender.Dispose(); Receiver.Dispose(); SentBytes.Dispose(); ReceiverInput.Dispose();
        }
    }

    private static (Socket, Socket) Pair()
    {
        using var l = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        l.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        l.Listen(1);
        var c = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        c.Connect(l.LocalEndPoint!);
        return (c, l.Accept());
    }

    private static void ReadExactly(Socket s, Span<byte> into)
    {
        while (into.Length > 0)
        {
            int n = s.Receive(into);
            if (n == 0) throw new EndOfStreamException();
            into = into[n..];
        }
    }

    /// <summary>A Pages frame of two pages, each its index repeated, prepared in place as the page server does.</summary>
    private static byte[] PreparedPages(long first, out int payload)
    {
        payload = Wire.PagesHeaderSize + 2 * 4096;
        var frame = new byte[Wire.HeaderSize + payload + FrameConnection.TrailerRoom];
        FrameCodec.WritePagesHeader(frame.AsSpan(Wire.HeaderSize), first, 2, PageOrigin.Push);
        frame.AsSpan(Wire.HeaderSize + Wire.PagesHeaderSize, 4096).Fill((byte)first);
        frame.AsSpan(Wire.HeaderSize + Wire.PagesHeaderSize + 4096, 4096).Fill((byte)(first + 1));
        frame.AsSpan(frame.Length - FrameConnection.TrailerRoom).Fill(0xee); // the next run's data
        return frame;
    }

    [Test]
    public void SealedPagesArriveIntactAndCannotBeReadOnTheWire()
    {
        using var tap = new Wiretap();
        var frame = PreparedPages(7, out int payload);
        tap.Sender.SendPrepared(frame, FrameType.Pages, payload);
        Assert.That(frame.AsSpan(frame.Length - FrameConnection.TrailerRoom).ToArray(), Is.All.EqualTo(0xee), "the lent trailer bytes are given back");
        var wire = tap.Capture();
        Assert.That(wire, Has.Length.EqualTo(Wire.HeaderSize + payload + FrameSeal.TagSize));
        Assert.That(wire.AsSpan().IndexOf(Enumerable.Repeat((byte)7, 32).ToArray()), Is.EqualTo(-1), "page bytes in clear on the wire");
        tap.Deliver(wire);
        Assert.That(tap.Receiver.ReadFrame(), Is.EqualTo(FrameType.Pages));
        var h = FrameCodec.ReadPages(tap.Receiver.Payload, 4096, 64);
        Assert.That((h.First, h.Count, h.Origin), Is.EqualTo((7L, 2, PageOrigin.Push)));
        Assert.That(tap.Receiver.Payload.Slice(Wire.PagesHeaderSize, 4096).ToArray(), Is.All.EqualTo(7));
        Assert.That(tap.Receiver.Payload.Slice(Wire.PagesHeaderSize + 4096, 4096).ToArray(), Is.All.EqualTo(8));
    }

    [TestCase(2, TestName = "FlippedTypeIsRefused")]
    [TestCase(Wire.HeaderSize + 3, TestName = "FlippedPagesHeaderIsRefused")]
    [TestCase(Wire.HeaderSize + Wire.PagesHeaderSize + 100, TestName = "FlippedPageByteIsRefused")]
    [TestCase(-1, TestName = "FlippedTagIsRefused")]
    public void FlippedByteIsRefused(int offset)
    {
        using var tap = new Wiretap();
        var frame = PreparedPages(3, out int payload);
        tap.Sender.SendPrepared(frame, FrameType.Pages, payload);
        var wire = tap.Capture();
        wire[offset < 0 ? wire.Length - 1 : offset] ^= 0x01;
        if (offset == 2) wire[2] = (byte)FrameType.ZeroMap; // still a known type, within its limit
        tap.Deliver(wire);
        var e = Assert.Throws<ProtocolException>(() => tap.Receiver.ReadFrame());
        Assert.That(e!.Message, Does.Contain("failed authentication"));
    }

    [Test]
    public void ShortenedFrameIsRefused()
    {
        // The length is not associated data: GCM's tag covers the ciphertext's length.
        using var tap = new Wiretap();
        var frame = PreparedPages(3, out int payload);
        tap.Sender.SendPrepared(frame, FrameType.Pages, payload);
        var wire = tap.Capture();
        var shorter = new byte[wire.Length - 4096];
        wire.AsSpan(0, Wire.HeaderSize + Wire.PagesHeaderSize + 4096).CopyTo(shorter);
        wire.AsSpan(wire.Length - FrameSeal.TagSize).CopyTo(shorter.AsSpan(shorter.Length - FrameSeal.TagSize));
        BinaryPrimitives.WriteUInt32LittleEndian(shorter.AsSpan(4), (uint)(shorter.Length - Wire.HeaderSize));
        FrameCodec.WritePagesHeader(shorter.AsSpan(Wire.HeaderSize), 3, 1, PageOrigin.Push); // as if it said one page
        tap.Deliver(shorter);
        Assert.Throws<ProtocolException>(() => tap.Receiver.ReadFrame());
    }

    [Test]
    public void ReplayedFrameIsRefused()
    {
        using var tap = new Wiretap();
        var frame = PreparedPages(1, out int payload);
        tap.Sender.SendPrepared(frame, FrameType.Pages, payload);
        var first = tap.Capture();
        tap.Deliver(first);
        Assert.That(tap.Receiver.ReadFrame(), Is.EqualTo(FrameType.Pages));
        tap.Deliver(first);
        Assert.Throws<ProtocolException>(() => tap.Receiver.ReadFrame());
    }

    [Test]
    public void DroppedFrameIsNoticedAtTheNext()
    {
        using var tap = new Wiretap();
        tap.Sender.Send(FrameType.Heartbeat, default);
        tap.Sender.Send(FrameType.Heartbeat, default);
        tap.Capture();
        tap.Deliver(tap.Capture()); // the first one never arrives
        Assert.Throws<ProtocolException>(() => tap.Receiver.ReadFrame());
    }

    [Test]
    public void ForgedFrameIsRefused()
    {
        using var tap = new Wiretap();
        var forged = new byte[Wire.HeaderSize + Wire.PagesHeaderSize + 4096 + FrameSeal.TagSize];
        BinaryPrimitives.WriteUInt16LittleEndian(forged, Wire.Magic);
        forged[2] = (byte)FrameType.Pages;
        BinaryPrimitives.WriteUInt32LittleEndian(forged.AsSpan(4), (uint)(forged.Length - Wire.HeaderSize));
        FrameCodec.WritePagesHeader(forged.AsSpan(Wire.HeaderSize), 0, 1, PageOrigin.Demand);
        tap.Deliver(forged);
        Assert.Throws<ProtocolException>(() => tap.Receiver.ReadFrame());
    }

    [Test]
    public void ClearTextIsReadableAsChosen()
    {
        // The --insecure-lanes choice does what it says: the same frame is plain on the wire.
        using var tap = new Wiretap(LaneProtection.ClearText);
        var frame = PreparedPages(7, out int payload);
        tap.Sender.SendPrepared(frame, FrameType.Pages, payload);
        var wire = tap.Capture();
        Assert.That(wire, Has.Length.EqualTo(Wire.HeaderSize + payload));
        Assert.That(wire[Wire.HeaderSize + Wire.PagesHeaderSize], Is.EqualTo(7));
    }

    [Test]
    public void KeysDifferPerMigrationLaneAndDirection()
    {
        byte[] cn = new byte[32], sn = new byte[32];
        Assert.That(LaneKeys.ForMigration("secret"u8, "m1"), Is.Not.EqualTo(LaneKeys.ForMigration("secret"u8, "m2")));
        // A frame sealed for the push lane does not open on a demand lane of the same connection nonces.
        using var push = LaneKeys.Derive(Key, Lane.Push, cn, sn, Session, forClient: false);
        using var demand = LaneKeys.Derive(Key, Lane.Demand, cn, sn, Session, forClient: true);
        using var otherSession = LaneKeys.Derive(Key, Lane.Push, cn, sn, Session with { SessionId = 99 }, forClient: true);
        using var sameDirection = LaneKeys.Derive(Key, Lane.Push, cn, sn, Session, forClient: false);
        using var right = LaneKeys.Derive(Key, Lane.Push, cn, sn, Session, forClient: true);
        const byte type = (byte)FrameType.Pages;
        byte[] frame = new byte[32 + FrameSeal.TagSize];
        push.Seal(type, frame, 32);
        Assert.That(demand.TryOpen(type, frame.ToArray()), Is.False);
        Assert.That(otherSession.TryOpen(type, frame.ToArray()), Is.False);
        Assert.That(sameDirection.TryOpen(type, frame.ToArray()), Is.False, "a frame reflected back to its sender");
        Assert.That(right.TryOpen((byte)FrameType.ZeroPages, frame.ToArray()), Is.False, "the same bytes as another frame type");
        Assert.That(right.TryOpen(type, [.. frame[..16], .. frame[^FrameSeal.TagSize..]]), Is.False, "a shortened frame");
        Assert.That(right.TryOpen(type, frame), Is.True);
        Assert.That(frame[..32], Is.All.EqualTo(0));
    }
}
