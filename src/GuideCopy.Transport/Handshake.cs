using System.Buffers.Binary;
using System.Security.Cryptography;

namespace GuideCopy.Transport;

/// <summary>What the source tells an authenticated destination about the RAM it serves.</summary>
public readonly record struct SessionInfo(int PageSize, long PageCount, ulong SessionId);

/// <summary>
/// Versioned handshake with mutual challenge-response over the migration's key
/// (<see cref="LaneKeys.ForMigration"/>), then, unless both sides chose clear text, AEGIS-256 on
/// every later frame with keys derived from both nonces (<see cref="LaneKeys.Derive"/>).
/// The key never crosses the wire; a peer that cannot prove it gets an Error frame and a
/// closed connection, and no page. Everything the client acts on is inside a MAC: its lane and
/// protection choice (so neither can be downgraded in flight) and the welcome's page size,
/// page count and session id (so a page server of another migration or session is refused).
///   C->S ClientHello(version u32, lane u8, protection u8, client nonce[32])
///   S->C ServerChallenge(version u32, server nonce[32])
///   C->S ClientProof(HMAC(key, "GCv2-client" | lane | protection | cnonce | snonce))
///   S->C ServerWelcome(page size u32, page count u64, session id u64,
///                      HMAC(key, "GCv2-server" | lane | protection | snonce | cnonce | those 20 bytes))
/// </summary>
public static class Handshake
{
    private static ReadOnlySpan<byte> ClientLabel => "GCv2-client"u8;
    private static ReadOnlySpan<byte> ServerLabel => "GCv2-server"u8;
    private const int HelloSize = 4 + 1 + 1 + Wire.NonceSize;
    public const int HelloLength = HelloSize;
    private const int SessionFieldsSize = 4 + 8 + 8;

    /// <summary>The longest a server waits for a connection to pass the handshake, in ms.</summary>
    public const int DeadlineMs = 5000;

    public static SessionInfo Client(FrameConnection c, Lane lane, ReadOnlySpan<byte> key, LaneProtection protection = LaneProtection.Sealed)
    {
        Span<byte> hello = stackalloc byte[HelloSize];
        BinaryPrimitives.WriteUInt32LittleEndian(hello, Wire.ProtocolVersion);
        hello[4] = (byte)lane;
        hello[5] = (byte)protection;
        Span<byte> cnonce = hello[6..];
        RandomNumberGenerator.Fill(cnonce);
        c.Send(FrameType.ClientHello, hello);

        try { c.Expect(FrameType.ServerChallenge); }
        catch (ProtocolException e) when (e.Message.StartsWith("peer error", StringComparison.Ordinal))
        {
            throw new AuthenticationFailedException($"source refused us: {e.Message}");
        }
        Span<byte> snonce = stackalloc byte[Wire.NonceSize];
        ParseChallenge(c.Payload).CopyTo(snonce);

        Span<byte> mac = stackalloc byte[Wire.MacSize];
        Mac(key, ClientLabel, lane, protection, cnonce, snonce, default, mac);
        c.Send(FrameType.ClientProof, mac);

        try { c.Expect(FrameType.ServerWelcome); }
        catch (ProtocolException e) when (e.Message.StartsWith("peer error", StringComparison.Ordinal))
        {
            throw new AuthenticationFailedException($"source refused us: {e.Message}");
        }
        var w = c.Payload;
        if (w.Length != SessionFieldsSize + Wire.MacSize) throw new ProtocolException("bad welcome length");
        // The MAC first: nothing of the welcome is believed before it passed.
        Mac(key, ServerLabel, lane, protection, snonce, cnonce, w[..SessionFieldsSize], mac);
        if (!CryptographicOperations.FixedTimeEquals(mac, w[SessionFieldsSize..]))
            throw new AuthenticationFailedException("the source could not prove it knows this migration's key (another migration's page server, or another secret)");
        var session = ParseWelcome(w);
        c.PageSize = session.PageSize;
        if (protection == LaneProtection.Sealed) c.StartSealing(LaneKeys.Derive(key, lane, cnonce, snonce, session, forClient: true));
        c.Authenticated = true;
        return session;
    }

    /// <summary>Server side; returns the lane the authenticated client asked for. A client that asks for another protection than ours is refused.</summary>
    public static Lane Server(FrameConnection c, ReadOnlySpan<byte> key, SessionInfo session, LaneProtection protection = LaneProtection.Sealed)
    {
        c.Expect(FrameType.ClientHello);
        var h = c.Payload;
        var (version, lane, asked) = ParseHello(h);
        if (version != Wire.ProtocolVersion)
        {
            c.TrySendError($"unsupported protocol version {version}, this source speaks {Wire.ProtocolVersion}: install the same guidecopy version on both hosts");
            throw new ProtocolException($"client speaks protocol {version}");
        }
        if (asked != protection)
        {
            c.TrySendError($"this source's lanes are {Describe(protection)}, the destination asked for {Describe(asked)}: run both sides of the migration with the same encryption setting");
            throw new ProtocolException($"client asked for {Describe(asked)} lanes");
        }
        Span<byte> cnonce = stackalloc byte[Wire.NonceSize];
        h.Slice(6, Wire.NonceSize).CopyTo(cnonce);

        Span<byte> challenge = stackalloc byte[4 + Wire.NonceSize];
        BinaryPrimitives.WriteUInt32LittleEndian(challenge, Wire.ProtocolVersion);
        Span<byte> snonce = challenge[4..];
        RandomNumberGenerator.Fill(snonce);
        c.Send(FrameType.ServerChallenge, challenge);

        c.Expect(FrameType.ClientProof);
        Span<byte> mac = stackalloc byte[Wire.MacSize];
        Mac(key, ClientLabel, lane, protection, cnonce, snonce, default, mac);
        if (c.PayloadLength != Wire.MacSize || !CryptographicOperations.FixedTimeEquals(mac, c.Payload))
        {
            c.TrySendError("authentication failed: the destination does not hold this migration's key (check that both agents use the same secret file)");
            throw new AuthenticationFailedException("client failed the challenge");
        }
        Span<byte> welcome = stackalloc byte[SessionFieldsSize + Wire.MacSize];
        BinaryPrimitives.WriteUInt32LittleEndian(welcome, (uint)session.PageSize);
        BinaryPrimitives.WriteUInt64LittleEndian(welcome[4..], (ulong)session.PageCount);
        BinaryPrimitives.WriteUInt64LittleEndian(welcome[12..], session.SessionId);
        Mac(key, ServerLabel, lane, protection, snonce, cnonce, welcome[..SessionFieldsSize], welcome[SessionFieldsSize..]);
        c.Send(FrameType.ServerWelcome, welcome);
        c.PageSize = session.PageSize;
        if (protection == LaneProtection.Sealed) c.StartSealing(LaneKeys.Derive(key, lane, cnonce, snonce, session, forClient: false));
        c.Authenticated = true;
        return lane;
    }

    /// <summary>
    /// A ClientHello: the version (checked by the caller, which answers an old client in words),
    /// the lane and the protection asked for; the nonce is the last <see cref="Wire.NonceSize"/> bytes.
    /// </summary>
    public static (uint Version, Lane Lane, LaneProtection Protection) ParseHello(ReadOnlySpan<byte> h)
    {
        if (h.Length < 4) throw new ProtocolException("bad hello length");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(h);
        if (version != Wire.ProtocolVersion) return (version, default, default);
        if (h.Length != HelloSize) throw new ProtocolException("bad hello length");
        var lane = (Lane)h[4];
        if (lane is not (Lane.Demand or Lane.Push or Lane.Control)) throw new ProtocolException($"unknown lane {(byte)lane}");
        var protection = (LaneProtection)h[5];
        if (protection is not (LaneProtection.Sealed or LaneProtection.ClearText)) throw new ProtocolException($"unknown protection {(byte)protection}");
        return (version, lane, protection);
    }

    /// <summary>A ServerChallenge: returns the server's nonce.</summary>
    public static ReadOnlySpan<byte> ParseChallenge(ReadOnlySpan<byte> ch)
    {
        if (ch.Length != 4 + Wire.NonceSize) throw new ProtocolException("bad challenge length");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(ch);
        if (version != Wire.ProtocolVersion) throw new ProtocolException($"source speaks protocol {version}, we speak {Wire.ProtocolVersion}: install the same guidecopy version on both hosts");
        return ch.Slice(4, Wire.NonceSize);
    }

    /// <summary>The session fields of a ServerWelcome whose MAC passed.</summary>
    public static SessionInfo ParseWelcome(ReadOnlySpan<byte> w)
    {
        if (w.Length != SessionFieldsSize + Wire.MacSize) throw new ProtocolException("bad welcome length");
        uint pageSize = BinaryPrimitives.ReadUInt32LittleEndian(w);
        ulong pageCount = BinaryPrimitives.ReadUInt64LittleEndian(w[4..]);
        ulong sessionId = BinaryPrimitives.ReadUInt64LittleEndian(w[12..]);
        if (pageSize < 4096 || (pageSize & (pageSize - 1)) != 0 || pageSize > (1u << 30)) throw new ProtocolException($"bad page size {pageSize}");
        if (pageCount == 0 || pageCount > (ulong)Wire.MaxPageCount) throw new ProtocolException($"bad page count {pageCount}");
        return new SessionInfo((int)pageSize, (long)pageCount, sessionId);
    }

    /// <summary>The words a report and an error use for a protection.</summary>
    public static string Describe(LaneProtection p) => p switch
    {
        LaneProtection.Sealed => FrameSeal.Name,
        LaneProtection.ClearText => "clear text",
        _ => $"unknown protection {(byte)p}",
    };

    private static void Mac(ReadOnlySpan<byte> key, ReadOnlySpan<byte> label, Lane lane, LaneProtection protection,
        ReadOnlySpan<byte> first, ReadOnlySpan<byte> second, ReadOnlySpan<byte> fields, Span<byte> into)
    {
        Span<byte> data = stackalloc byte[16 + 2 + 2 * Wire.NonceSize + SessionFieldsSize];
        int n = 0;
        label.CopyTo(data);
        n += label.Length;
        data[n++] = (byte)lane;
        data[n++] = (byte)protection;
        first.CopyTo(data[n..]);
        n += Wire.NonceSize;
        second.CopyTo(data[n..]);
        n += Wire.NonceSize;
        fields.CopyTo(data[n..]);
        n += fields.Length;
        HMACSHA256.HashData(key, data[..n], into);
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
