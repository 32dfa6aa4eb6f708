using System.Buffers.Binary;
using System.Security.Cryptography;

namespace GuideCopy.Transport;

/// <summary>What the source tells an authenticated destination about the RAM it serves.</summary>
public readonly record struct SessionInfo(int PageSize, long PageCount, ulong SessionId);

/// <summary>
/// Versioned handshake with mutual shared-secret challenge-response (HMAC-SHA256 over both
/// nonces and the lane). The secret never crosses the wire; a peer that cannot prove it gets
/// an Error frame and a closed connection, and no page.
///   C->S ClientHello(version u32, lane u8, client nonce[32])
///   S->C ServerChallenge(version u32, server nonce[32])
///   C->S ClientProof(HMAC(secret, "GCv1-client" | lane | cnonce | snonce))
///   S->C ServerWelcome(HMAC(secret, "GCv1-server" | lane | snonce | cnonce), page size u32, page count u64, session id u64)
/// </summary>
public static class Handshake
{
    private static ReadOnlySpan<byte> ClientLabel => "GCv1-client"u8;
    private static ReadOnlySpan<byte> ServerLabel => "GCv1-server"u8;

    public static SessionInfo Client(FrameConnection c, Lane lane, ReadOnlySpan<byte> secret)
    {
        Span<byte> hello = stackalloc byte[4 + 1 + Wire.NonceSize];
        BinaryPrimitives.WriteUInt32LittleEndian(hello, Wire.ProtocolVersion);
        hello[4] = (byte)lane;
        Span<byte> cnonce = hello[5..];
        RandomNumberGenerator.Fill(cnonce);
        c.Send(FrameType.ClientHello, hello);

        c.Expect(FrameType.ServerChallenge);
        var ch = c.Payload;
        if (ch.Length != 4 + Wire.NonceSize) throw new ProtocolException("bad challenge length");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(ch);
        if (version != Wire.ProtocolVersion) throw new ProtocolException($"source speaks protocol {version}, we speak {Wire.ProtocolVersion}");
        Span<byte> snonce = stackalloc byte[Wire.NonceSize];
        ch.Slice(4, Wire.NonceSize).CopyTo(snonce);

        Span<byte> mac = stackalloc byte[Wire.MacSize];
        Mac(secret, ClientLabel, lane, cnonce, snonce, mac);
        c.Send(FrameType.ClientProof, mac);

        try { c.Expect(FrameType.ServerWelcome); }
        catch (ProtocolException e) when (e.Message.StartsWith("peer error", StringComparison.Ordinal))
        {
            throw new AuthenticationFailedException($"source refused us: {e.Message}");
        }
        var w = c.Payload;
        if (w.Length != Wire.MacSize + 20) throw new ProtocolException("bad welcome length");
        Mac(secret, ServerLabel, lane, snonce, cnonce, mac);
        if (!CryptographicOperations.FixedTimeEquals(mac, w[..Wire.MacSize]))
            throw new AuthenticationFailedException("the source could not prove it knows the secret");
        int pageSize = (int)BinaryPrimitives.ReadUInt32LittleEndian(w[32..]);
        long pageCount = (long)BinaryPrimitives.ReadUInt64LittleEndian(w[36..]);
        ulong session = BinaryPrimitives.ReadUInt64LittleEndian(w[44..]);
        if (pageSize < 4096 || (pageSize & (pageSize - 1)) != 0 || pageSize > (1 << 30)) throw new ProtocolException($"bad page size {pageSize}");
        if (pageCount <= 0 || pageCount > Wire.MaxPageCount) throw new ProtocolException($"bad page count {pageCount}");
        c.PageSize = pageSize;
        c.Authenticated = true;
        return new SessionInfo(pageSize, pageCount, session);
    }

    /// <summary>Server side; returns the lane the authenticated client asked for.</summary>
    public static Lane Server(FrameConnection c, ReadOnlySpan<byte> secret, SessionInfo session)
    {
        c.Expect(FrameType.ClientHello);
        var h = c.Payload;
        if (h.Length != 4 + 1 + Wire.NonceSize) throw new ProtocolException("bad hello length");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(h);
        if (version != Wire.ProtocolVersion)
        {
            c.TrySendError($"unsupported protocol version {version}");
            throw new ProtocolException($"client speaks protocol {version}");
        }
        var lane = (Lane)h[4];
        if (lane is not (Lane.Demand or Lane.Push or Lane.Control)) throw new ProtocolException($"unknown lane {(byte)lane}");
        Span<byte> cnonce = stackalloc byte[Wire.NonceSize];
        h.Slice(5, Wire.NonceSize).CopyTo(cnonce);

        Span<byte> challenge = stackalloc byte[4 + Wire.NonceSize];
        BinaryPrimitives.WriteUInt32LittleEndian(challenge, Wire.ProtocolVersion);
        Span<byte> snonce = challenge[4..];
        RandomNumberGenerator.Fill(snonce);
        c.Send(FrameType.ServerChallenge, challenge);

        c.Expect(FrameType.ClientProof);
        Span<byte> mac = stackalloc byte[Wire.MacSize];
        Mac(secret, ClientLabel, lane, cnonce, snonce, mac);
        if (c.PayloadLength != Wire.MacSize || !CryptographicOperations.FixedTimeEquals(mac, c.Payload))
        {
            c.TrySendError("authentication failed");
            throw new AuthenticationFailedException("client failed the challenge");
        }
        Span<byte> welcome = stackalloc byte[Wire.MacSize + 20];
        Mac(secret, ServerLabel, lane, snonce, cnonce, welcome[..Wire.MacSize]);
        BinaryPrimitives.WriteUInt32LittleEndian(welcome[32..], (uint)session.PageSize);
        BinaryPrimitives.WriteUInt64LittleEndian(welcome[36..], (ulong)session.PageCount);
        BinaryPrimitives.WriteUInt64LittleEndian(welcome[44..], session.SessionId);
        c.Send(FrameType.ServerWelcome, welcome);
        c.PageSize = session.PageSize;
        c.Authenticated = true;
        return lane;
    }

    private static void Mac(ReadOnlySpan<byte> secret, ReadOnlySpan<byte> label, Lane lane,
        ReadOnlySpan<byte> first, ReadOnlySpan<byte> second, Span<byte> into)
    {
        Span<byte> data = stackalloc byte[16 + 1 + 2 * Wire.NonceSize];
        label.CopyTo(data);
        data[label.Length] = (byte)lane;
        first.CopyTo(data[(label.Length + 1)..]);
        second.CopyTo(data[(label.Length + 1 + Wire.NonceSize)..]);
        HMACSHA256.HashData(secret, data[..(label.Length + 1 + 2 * Wire.NonceSize)], into);
    }

    /// <summary>Reads a secret file: its bytes with trailing whitespace removed; refuses an empty one.</summary>
    public static byte[] ReadSecretFile(string path)
    {
        var bytes = File.ReadAllBytes(path);
        int n = bytes.Length;
        while (n > 0 && (bytes[n - 1] is (byte)'\n' or (byte)'\r' or (byte)' ' or (byte)'\t')) n--;
        if (n == 0) throw new InvalidDataException($"secret file {path} is empty");
        return bytes[..n];
    }
}
