using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using GuideCopy.Transport;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>A real PageServer on loopback against wrong secrets and garbage: nothing leaks, it keeps serving.</summary>
public class HandshakeTests
{
    private LoopbackPageServer _source = null!;
    private string _file = "";
    private PageServer _server = null!;
    private static readonly byte[] Secret = "right secret"u8.ToArray();

    [SetUp]
    public void SetUp()
    {
        _file = $"/dev/shm/gcmp-hs-{Environment.ProcessId}";
        using (var f = new FileStream(_file, FileMode.Create))
        {
            f.SetLength(64 * 4096);
            f.Position = 4096; f.Write(Enumerable.Repeat((byte)0xab, 4096).ToArray());
        }
        _source = new LoopbackPageServer(_file, Secret);
        _server = _source.Server;
    }

    [TearDown]
    public void TearDown() => _source.Dispose();

    private FrameConnection Connect()
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Connect(_server.LocalEndPoint);
        return new FrameConnection(s, 2000);
    }

    [Test]
    public void WrongSecretGetsNothing()
    {
        using var c = Connect();
        Assert.Throws<AuthenticationFailedException>(() => Handshake.Client(c, Lane.Demand, "wrong secret"u8));
        // The server closed the lane: no zero map, no page.
        Assert.Throws(Is.InstanceOf<IOException>(), () => c.ReadFrame());
        Assert.That(c.BytesReceived, Is.LessThan(200));
        SpinWait.SpinUntil(() => _server.Counters.AuthFailures == 1, 2000);
        Assert.That(_server.Counters.AuthFailures, Is.EqualTo(1));
        Assert.That(_server.Counters.PagesSent, Is.Zero);
    }

    [Test]
    public void ImpostorSourceIsRefused()
    {
        // A server that does not know the secret cannot prove it: the client refuses before any page.
        using var impostor = new PageServer(_file, new PageServerOptions { Secret = "other"u8.ToArray(), Listen = new IPEndPoint(IPAddress.Loopback, 0) });
        impostor.Start();
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Connect(impostor.LocalEndPoint);
        using var c = new FrameConnection(s, 2000);
        Assert.Throws<AuthenticationFailedException>(() => Handshake.Client(c, Lane.Demand, Secret));
    }

    [Test]
    public void RightSecretGetsZeroMapAndPages()
    {
        using var c = Connect();
        var info = Handshake.Client(c, Lane.Demand, Secret);
        Assert.That(info.PageCount, Is.EqualTo(64));
        c.Expect(FrameType.ZeroMap);
        Assert.That(c.Payload[8], Is.EqualTo(0xfd)); // page 1 is the only data page among 0..7
        Span<byte> demand = stackalloc byte[FrameCodec.DemandSize(1)];
        FrameCodec.WriteDemand(demand, [1]);
        c.Send(FrameType.Demand, demand);
        FrameType t;
        while ((t = c.ReadFrame()) == FrameType.Heartbeat) { }
        Assert.That(t, Is.EqualTo(FrameType.Pages));
        Assert.That(c.Payload[Wire.PagesHeaderSize..].ToArray(), Is.All.EqualTo(0xab));
    }

    [Test]
    public void GarbageBeforeHandshakeClosesCleanly()
    {
        var rng = new Random(7);
        for (int i = 0; i < 50; i++)
        {
            using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            s.Connect(_server.LocalEndPoint);
            var junk = new byte[rng.Next(1, 300)];
            rng.NextBytes(junk);
            if (i % 3 == 0) { junk[0] = 0x47; if (junk.Length > 1) junk[1] = 0x43; } // valid magic, junk after
            s.Send(junk);
            s.Shutdown(SocketShutdown.Send);
            s.ReceiveTimeout = 3000;
            var buf = new byte[4096];
            try { while (s.Receive(buf) > 0) { } } catch (SocketException) { }
        }
        SpinWait.SpinUntil(() => _server.Counters.ProtocolErrors + _server.Counters.AuthFailures > 0, 2000);
        Assert.That(_server.Counters.PagesSent, Is.Zero);
        RightSecretGetsZeroMapAndPages(); // still serving
    }

    [Test]
    public void HostileDemandAfterAuthClosesThatLaneOnly()
    {
        using (var c = Connect())
        {
            Handshake.Client(c, Lane.Demand, Secret);
            c.Expect(FrameType.ZeroMap);
            Span<byte> demand = stackalloc byte[FrameCodec.DemandSize(1)];
            FrameCodec.WriteDemand(demand, [1L << 40]); // out of range
            c.Send(FrameType.Demand, demand);
            var e = Assert.Throws<ProtocolException>(() => { while (c.ReadFrame() == FrameType.Heartbeat) { } });
            Assert.That(e!.Message, Does.Contain("demand for page"));
        }
        using (var c = Connect())
        {
            Handshake.Client(c, Lane.Demand, Secret);
            Span<byte> lie = stackalloc byte[12];
            BinaryPrimitives.WriteUInt32LittleEndian(lie, 500); // count says 500, carries 1
            c.Expect(FrameType.ZeroMap);
            c.Send(FrameType.Demand, lie);
            Assert.Throws<ProtocolException>(() => { while (c.ReadFrame() == FrameType.Heartbeat) { } });
        }
        Assert.That(_server.Counters.ProtocolErrors, Is.EqualTo(2));
        RightSecretGetsZeroMapAndPages();
    }
}

/// <summary>The v2 handshake's bindings: migration, protection choice, welcome fields.</summary>
public class HandshakeBindingTests
{
    private static readonly byte[] Secret = "right secret"u8.ToArray();
    private string _file = "";

    [SetUp]
    public void SetUp()
    {
        _file = $"/dev/shm/gcmp-hb-{Environment.ProcessId}";
        using var f = new FileStream(_file, FileMode.Create);
        f.SetLength(64 * 4096);
    }

    [TearDown]
    public void TearDown() => File.Delete(_file);

    private PageServer Serve(byte[] key, LaneProtection protection = LaneProtection.Sealed)
    {
        var s = new PageServer(_file, new PageServerOptions { Secret = key, Listen = new IPEndPoint(IPAddress.Loopback, 0), LinkTimeoutMs = 2000, Protection = protection });
        s.Start();
        return s;
    }

    private static FrameConnection Connect(PageServer server)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Connect(server.LocalEndPoint);
        return new FrameConnection(s, 2000);
    }

    [Test]
    public void PageServerOfAnotherMigrationIsRefused()
    {
        // Same secret file, another migration id: the keys differ, so neither side passes.
        using var other = Serve(LaneKeys.ForMigration(Secret, "migration-a"));
        using var c = Connect(other);
        Assert.Throws<AuthenticationFailedException>(() => Handshake.Client(c, Lane.Demand, LaneKeys.ForMigration(Secret, "migration-b")));
        Assert.That(other.Counters.PagesSent, Is.Zero);
    }

    [Test]
    public void ProtectionMismatchNamesTheFix()
    {
        using var server = Serve(Secret, LaneProtection.Sealed);
        using var c = Connect(server);
        var e = Assert.Throws<AuthenticationFailedException>(() => Handshake.Client(c, Lane.Demand, Secret, LaneProtection.ClearText));
        Assert.That(e!.Message, Does.Contain("same encryption setting"));
    }

    [Test]
    public void SealedHandshakeThenPages()
    {
        using var server = Serve(Secret);
        using var c = Connect(server);
        var info = Handshake.Client(c, Lane.Demand, Secret);
        Assert.That(c.IsSealed, Is.True);
        Assert.That(info.SessionId, Is.EqualTo(server.SessionId));
        c.Expect(FrameType.ZeroMap);
        Span<byte> demand = stackalloc byte[FrameCodec.DemandSize(1)];
        FrameCodec.WriteDemand(demand, [1]);
        c.Send(FrameType.Demand, demand);
        FrameType t;
        while ((t = c.ReadFrame()) == FrameType.Heartbeat) { }
        Assert.That(t, Is.EqualTo(FrameType.ZeroPages), "page 1 of a sparse file is zero");
    }

    [Test]
    public void TricklingPeerIsCutAtTheHandshakeDeadline()
    {
        using var server = Serve(Secret);
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Connect(server.LocalEndPoint);
        using var _ = s;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        bool closed = false;
        // A well-formed ClientHello, one byte a second: each receive is within the 2 s link
        // timeout, the whole is not.
        var hello = new byte[Wire.HeaderSize + 38];
        BinaryPrimitives.WriteUInt16LittleEndian(hello, Wire.Magic);
        hello[2] = (byte)FrameType.ClientHello;
        BinaryPrimitives.WriteUInt32LittleEndian(hello.AsSpan(4), 38);
        try
        {
            for (int i = 0; i < hello.Length && !closed; i++)
            {
                s.Send(hello.AsSpan(i, 1));
                closed = s.Poll(1_000_000, SelectMode.SelectRead) && s.Available == 0; // readable with nothing to read: closed
            }
        }
        catch (SocketException)
        {
            closed = true;
        }

        Assert.That(closed, Is.True, $"the server never closed a peer that does not finish its handshake ({sw.Elapsed.TotalSeconds:0.0} s)");
        Assert.That(sw.Elapsed.TotalMilliseconds, Is.LessThan(Handshake.DeadlineMs + 2500), "the server held a slot past its handshake deadline");
    }
}
