using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;

namespace GuideCopy.Transport;

/// <summary>
/// One lane: length-prefixed frames over a TCP socket, read on one thread, written under a
/// lock from any thread. The receive buffer is pinned and reused (no per-frame allocation);
/// every header is checked against <see cref="Wire.MaxPayload"/> before a byte of payload is read.
/// Once <see cref="Handshake"/> has set a <see cref="FrameSeal"/>, every frame is sealed: its
/// length then counts the <see cref="FrameSeal.TagSize"/>-byte tag after the payload.
/// </summary>
public sealed class FrameConnection : IDisposable
{
    private readonly Socket _socket;
    private readonly object _sendLock = new();
    private byte[] _receive;
    private readonly byte[] _header = new byte[Wire.HeaderSize];
    private byte[] _sendScratch = [];
    private FrameSeal? _seal;
    private long _lastSendTicks;
    private long _bytesSent, _bytesReceived;
    private int _disposed;

    public FrameConnection(Socket socket, int linkTimeoutMs)
    {
        _socket = socket;
        _socket.NoDelay = true;
        // Room for a few batches in flight each way (the kernel doubles the value it is given).
        _socket.SendBufferSize = 4 << 20;
        _socket.ReceiveBufferSize = 4 << 20;
        _socket.ReceiveTimeout = linkTimeoutMs;
        _socket.SendTimeout = linkTimeoutMs;
        // Small until the peer is authenticated; grows once (pinned) to the largest frame seen.
        _receive = GC.AllocateUninitializedArray<byte>(Wire.MaxErrorBytes, pinned: true);
        _lastSendTicks = Stopwatch.GetTimestamp();
    }

    /// <summary>
    /// Set by <see cref="Handshake"/> once the peer proved the secret. Before that no frame may
    /// exceed <see cref="Wire.MaxErrorBytes"/>: an unauthenticated peer cannot make us allocate.
    /// </summary>
    public bool Authenticated { get => Volatile.Read(ref _authenticated); set => Volatile.Write(ref _authenticated, value); }
    private bool _authenticated;

    /// <summary>Frames are sealed (AEGIS-256) from here on; set once, by the handshake, on both sides at the same frame.</summary>
    public void StartSealing(FrameSeal seal) => _seal = seal;

    /// <summary>The lane's frames are encrypted and authenticated.</summary>
    public bool IsSealed => _seal is not null;

    /// <summary>Room a caller of <see cref="SendPrepared"/> leaves after the payload (the tag goes there while it is sent).</summary>
    public const int TrailerRoom = FrameSeal.TagSize;

    /// <summary>Page size of the session (bounds Pages frames); 4096 until the handshake sets it.</summary>
    public int PageSize { get; set; } = 4096;
    public long BytesSent => Interlocked.Read(ref _bytesSent);
    public long BytesReceived => Interlocked.Read(ref _bytesReceived);
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>Bytes sent that the peer has not acknowledged yet (SIOCOUTQ); -1 if unknown.</summary>
    public int UnsentBytes => IsDisposed ? -1 : GuideCopy.Interop.SocketQueues.Unsent(_socket.Handle);
    public Socket Socket => _socket;

    /// <summary>The payload of the last frame read (valid until the next read).</summary>
    public Span<byte> Payload => _receive.AsSpan(0, PayloadLength);
    public int PayloadLength { get; private set; }

    /// <summary>Reads one frame. Throws <see cref="ProtocolException"/> on anything malformed or failing its seal, IOException on link loss or timeout.</summary>
    public FrameType ReadFrame()
    {
        ReceiveExactly(_header);
        var seal = _seal;
        var (type, length) = FrameCodec.ReadHeader(_header, PageSize, Authenticated, seal is not null);
        uint trailer = seal is null ? 0u : FrameSeal.TagSize;
        if (length > (uint)_receive.Length) _receive = GC.AllocateUninitializedArray<byte>((int)Math.Max(length, Wire.PagesHeaderSize + (uint)Wire.MaxBatchBytes + trailer), pinned: true);
        ReceiveExactly(_receive.AsSpan(0, length));
        PayloadLength = length - (int)trailer;
        if (seal is not null && !seal.TryOpen((byte)type, _receive.AsSpan(0, length)))
        {
            PayloadLength = 0;
            throw new ProtocolException($"a {type} frame failed authentication (altered, forged, replayed or out of order)");
        }

        if (type == FrameType.Error)
            throw new ProtocolException("peer error: " + System.Text.Encoding.UTF8.GetString(Payload));
        return type;
    }

    /// <summary>Reads a frame of the one expected type (a peer's Error becomes an exception).</summary>
    public void Expect(FrameType type)
    {
        var got = ReadFrame();
        if (got != type) throw new ProtocolException($"expected {type}, got {got}");
    }

    private void ReceiveExactly(Span<byte> into)
    {
        try
        {
            while (into.Length > 0)
            {
                int n = _socket.Receive(into, SocketFlags.None);
                if (n == 0) throw new EndOfStreamException("peer closed the connection");
                Interlocked.Add(ref _bytesReceived, n);
                into = into[n..];
            }
        }
        catch (SocketException e)
        {
            throw new IOException($"lane receive failed: {e.SocketErrorCode}", e);
        }
        catch (ObjectDisposedException e)
        {
            throw new IOException("lane closed", e);
        }
    }

    /// <summary>
    /// Sends a frame whose payload is already in place after <see cref="Wire.HeaderSize"/> bytes
    /// of room, with <see cref="TrailerRoom"/> bytes after it. A sealed lane encrypts the payload
    /// in place (the caller's copy is ciphertext afterwards) and lends the trailer bytes to the
    /// tag for the one send, then puts them back: they may be the next run's page data.
    /// </summary>
    public void SendPrepared(Span<byte> frame, FrameType type, int payloadLength)
    {
        var seal = _seal;
        if (seal is null)
        {
            WriteHeader(frame, type, payloadLength);
            lock (_sendLock) SendAll(frame[..(Wire.HeaderSize + payloadLength)]);
            return;
        }

        int end = Wire.HeaderSize + payloadLength;
        if (frame.Length < end + TrailerRoom) throw new ArgumentException("no room for the tag after the payload", nameof(frame));
        WriteHeader(frame, type, payloadLength + FrameSeal.TagSize);
        Span<byte> lent = stackalloc byte[FrameSeal.TagSize];
        var trailer = frame.Slice(end, FrameSeal.TagSize);
        trailer.CopyTo(lent);
        lock (_sendLock)
        {
            try
            {
                seal.Seal((byte)type, frame[Wire.HeaderSize..(end + FrameSeal.TagSize)], payloadLength);
                SendAll(frame[..(end + FrameSeal.TagSize)]);
            }
            finally
            {
                lent.CopyTo(trailer);
            }
        }
    }

    /// <summary>Sends a small frame (handshake, demand, heartbeat, error, bitmaps).</summary>
    public void Send(FrameType type, ReadOnlySpan<byte> payload)
    {
        var seal = _seal;
        if (seal is null)
        {
            Span<byte> header = stackalloc byte[Wire.HeaderSize];
            WriteHeader(header, type, payload.Length);
            lock (_sendLock)
            {
                SendAll(header);
                if (payload.Length > 0) SendAll(payload);
            }
            return;
        }

        lock (_sendLock)
        {
            // Sealed: header, payload and tag go out as one write from a reused buffer (the
            // caller's payload stays as it was).
            int total = Wire.HeaderSize + payload.Length + FrameSeal.TagSize;
            if (_sendScratch.Length < total) _sendScratch = GC.AllocateUninitializedArray<byte>(Math.Max(total, 4096), pinned: true);
            var frame = _sendScratch.AsSpan(0, total);
            WriteHeader(frame, type, payload.Length + FrameSeal.TagSize);
            payload.CopyTo(frame[Wire.HeaderSize..]);
            seal.Seal((byte)type, frame[Wire.HeaderSize..], payload.Length);
            SendAll(frame);
        }
    }

    /// <summary>Sends a heartbeat if nothing was sent for <paramref name="idleMs"/>.</summary>
    public void HeartbeatIfIdle(int idleMs)
    {
        // Never inside a handshake: the peer expects its next handshake frame, and a heartbeat
        // sent between the welcome and the switch to sealed frames would not open.
        if (Authenticated && Stopwatch.GetElapsedTime(Volatile.Read(ref _lastSendTicks)).TotalMilliseconds >= idleMs)
            Send(FrameType.Heartbeat, default);
    }

    /// <summary>Best-effort error frame before closing (never throws).</summary>
    public void TrySendError(string message)
    {
        try
        {
            var bytes = System.Text.Encoding.UTF8.GetBytes(message.Length > 512 ? message[..512] : message);
            Send(FrameType.Error, bytes);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException) { }
    }

    private static void WriteHeader(Span<byte> h, FrameType type, int payloadLength)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(h, Wire.Magic);
        h[2] = (byte)type;
        h[3] = 0;
        BinaryPrimitives.WriteUInt32LittleEndian(h[4..], (uint)payloadLength);
    }

    private void SendAll(ReadOnlySpan<byte> data)
    {
        try
        {
            while (data.Length > 0)
            {
                int n = _socket.Send(data, SocketFlags.None);
                Interlocked.Add(ref _bytesSent, n);
                data = data[n..];
            }
            Volatile.Write(ref _lastSendTicks, Stopwatch.GetTimestamp());
        }
        catch (SocketException e)
        {
            throw new IOException($"lane send failed: {e.SocketErrorCode}", e);
        }
        catch (ObjectDisposedException e)
        {
            throw new IOException("lane closed", e);
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try { _socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { }
        _socket.Dispose();
        // The seal is left to its finalizer: the reading thread may be inside TryOpen right now.
    }
}
