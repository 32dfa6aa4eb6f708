using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using GuideCopy.Interop;
using GuideCopy.Transport;
using GuideCopy.MemoryPlane;

namespace GuideCopy.Kvm.Tests.Migration;

/// <summary>What a <see cref="LaneRelay"/> does to the page server's frames on each connection, in turn.</summary>
public enum RelayAttack
{
    /// <summary>Flips one byte of a sealed frame.</summary>
    FlipByte,
    /// <summary>Inserts a Pages frame of its own (a page of <see cref="LaneRelay.ForgedByte"/>).</summary>
    ForgePages,
    /// <summary>Sends again a frame the server sent earlier on the same connection.</summary>
    Replay,
}

/// <summary>
/// A man in the middle on the lab link: a TCP relay in a host's network namespace between the
/// destination's pager and the source's page server. It lets each connection's handshake
/// through (the frame headers are in clear: magic, type, length), then attacks the page
/// server's stream as <see cref="Attacks"/> says, one attack per connection while any are
/// left, and records every byte the server sent so a test can look for guest memory in it.
/// </summary>
public sealed class LaneRelay : IDisposable
{
    /// <summary>The byte a forged page is made of.</summary>
    public const byte ForgedByte = 0x5a;

    /// <summary>Server frames (after its two handshake frames) let through before the attack.</summary>
    private const int SealedFramesBeforeAttack = 2;

    private readonly Socket _listener;
    private readonly IPEndPoint _upstream;
    private readonly ConcurrentQueue<RelayAttack> _attacks;
    private readonly ConcurrentBag<Socket> _sockets = new();
    private readonly MemoryStream _fromServer = new();
    private readonly object _recordLock = new();
    private volatile bool _stopped;
    private int _connections;

    private LaneRelay(Socket listener, IPEndPoint upstream, IEnumerable<RelayAttack> attacks)
    {
        _listener = listener;
        _upstream = upstream;
        _attacks = new ConcurrentQueue<RelayAttack>(attacks);
        new Thread(AcceptLoop) { IsBackground = true, Name = "relay-accept" }.Start();
    }

    /// <summary>Attacks still to do, in order (one per connection).</summary>
    public IReadOnlyCollection<RelayAttack> Attacks => _attacks;

    /// <summary>Attacks done, with the connection each was done on.</summary>
    public ConcurrentQueue<(RelayAttack Attack, int Connection)> Done { get; } = new();

    public int Connections => Volatile.Read(ref _connections);

    public IPEndPoint LocalEndPoint => (IPEndPoint)_listener.LocalEndPoint!;

    /// <summary>
    /// Starts a relay listening on <paramref name="listen"/> inside the network namespace at
    /// <paramref name="netnsPath"/> (all its sockets are opened there), forwarding to <paramref name="upstream"/>.
    /// </summary>
    public static LaneRelay Start(string netnsPath, IPEndPoint listen, IPEndPoint upstream, IEnumerable<RelayAttack> attacks)
    {
        LaneRelay? relay = null;
        Exception? failed = null;
        var t = new Thread(() =>
        {
            try
            {
                NetworkNamespace.EnterOnThisThread(netnsPath);
                var l = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                l.Bind(listen);
                l.Listen(16);
                relay = new LaneRelay(l, upstream, attacks);
            }
            catch (Exception e)
            {
                failed = e;
            }
        });
        t.Start();
        t.Join();
        return relay ?? throw new InvalidOperationException($"relay did not start: {failed?.Message}", failed);
    }

    /// <summary>Every byte the page server sent through the relay, in order per connection.</summary>
    public byte[] ServerBytes()
    {
        lock (_recordLock) return _fromServer.ToArray();
    }

    private void AcceptLoop()
    {
        while (!_stopped)
        {
            Socket client;
            try { client = _listener.Accept(); }
            catch (Exception) when (_stopped) { return; }
            catch (SocketException) { continue; }
            int n = Interlocked.Increment(ref _connections);
            // Opened from this thread, which is in the namespace: the upstream socket is too.
            var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try { server.Connect(_upstream); }
            catch (SocketException) { client.Dispose(); server.Dispose(); continue; }
            _sockets.Add(client);
            _sockets.Add(server);
            RelayAttack? attack = _attacks.TryDequeue(out var a) ? a : null;
            new Thread(() => Pump(client, server)) { IsBackground = true, Name = "relay-up" }.Start();
            new Thread(() => PumpServer(server, client, attack, n)) { IsBackground = true, Name = "relay-down" }.Start();
        }
    }

    private static void Pump(Socket from, Socket to)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            int n;
            while ((n = from.Receive(buffer)) > 0) to.Send(buffer.AsSpan(0, n));
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        finally { Close(from, to); }
    }

    /// <summary>Server to client, frame by frame: the place where a man in the middle would act.</summary>
    private void PumpServer(Socket server, Socket client, RelayAttack? attack, int connection)
    {
        var header = new byte[Wire.HeaderSize];
        byte[]? replay = null;
        int frames = 0;
        try
        {
            while (true)
            {
                ReadExactly(server, header);
                int length = (int)BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4));
                var payload = new byte[length];
                ReadExactly(server, payload);
                Record(header, payload);
                frames++;
                int sealedFrames = frames - 2; // ServerChallenge, ServerWelcome
                if (sealedFrames == 1) replay = [.. header, .. payload];
                if (attack is { } what && sealedFrames == SealedFramesBeforeAttack)
                {
                    attack = null;
                    Done.Enqueue((what, connection));
                    switch (what)
                    {
                        case RelayAttack.FlipByte:
                            payload[length / 2] ^= 0x01;
                            break;
                        case RelayAttack.ForgePages:
                            client.Send(ForgedPagesFrame(first: 0));
                            break;
                        case RelayAttack.Replay:
                            client.Send(replay!);
                            break;
                    }
                }

                client.Send(header);
                client.Send(payload);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or EndOfStreamException) { }
        finally { Close(server, client); }
    }

    /// <summary>A Pages frame as an attacker without the keys can make it: right shape, a page of <see cref="ForgedByte"/>, a random tag.</summary>
    public static byte[] ForgedPagesFrame(long first)
    {
        int payload = Wire.PagesHeaderSize + 4096 + FrameSeal.TagSize;
        var frame = new byte[Wire.HeaderSize + payload];
        BinaryPrimitives.WriteUInt16LittleEndian(frame, Wire.Magic);
        frame[2] = (byte)FrameType.Pages;
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(4), (uint)payload);
        FrameCodec.WritePagesHeader(frame.AsSpan(Wire.HeaderSize), first, 1, PageOrigin.Push);
        frame.AsSpan(Wire.HeaderSize + Wire.PagesHeaderSize, 4096).Fill(ForgedByte);
        RandomNumberGenerator.Fill(frame.AsSpan(frame.Length - FrameSeal.TagSize));
        return frame;
    }

    private void Record(byte[] header, byte[] payload)
    {
        lock (_recordLock)
        {
            _fromServer.Write(header);
            _fromServer.Write(payload);
        }
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

    private static void Close(Socket a, Socket b)
    {
        try { a.Shutdown(SocketShutdown.Both); } catch (Exception) { }
        try { b.Shutdown(SocketShutdown.Both); } catch (Exception) { }
    }

    public void Dispose()
    {
        _stopped = true;
        _listener.Dispose();
        foreach (var s in _sockets) s.Dispose();
    }
}
