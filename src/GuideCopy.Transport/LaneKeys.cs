using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace GuideCopy.Transport;

/// <summary>How a lane's frames travel after its handshake.</summary>
public enum LaneProtection : byte
{
    /// <summary>AEGIS-256 over every frame (<see cref="FrameSeal"/>): the default.</summary>
    Sealed = 1,
    /// <summary>Clear text, authenticated only at the handshake: an explicit choice for closed lab links.</summary>
    ClearText = 2,
}

/// <summary>
/// The key schedule (HKDF-SHA256, RFC 5869): the agents' shared secret -> one key per
/// migration -> one key per connection and direction. So a page server of another migration
/// (same secret, other id) cannot pass the handshake, and no two connections, lanes or
/// directions ever share a key.
/// </summary>
public static class LaneKeys
{
    /// <summary>The key both agents derive for migration <paramref name="migrationId"/>: what its handshakes prove.</summary>
    public static byte[] ForMigration(ReadOnlySpan<byte> secret, string migrationId)
    {
        byte[] info = [.. "GCv2 migration "u8, .. Encoding.UTF8.GetBytes(migrationId)];
        return HKDF.DeriveKey(HashAlgorithmName.SHA256, secret.ToArray(), FrameSeal.KeySize, salt: [], info);
    }

    /// <summary>
    /// Both directions' keys of one connection: salted with both handshake nonces, bound to the
    /// lane and to everything the welcome told the client (session, page size, page count).
    /// </summary>
    public static FrameSeal Derive(ReadOnlySpan<byte> key, Lane lane, ReadOnlySpan<byte> clientNonce, ReadOnlySpan<byte> serverNonce,
        SessionInfo session, bool forClient)
    {
        Span<byte> salt = stackalloc byte[2 * Wire.NonceSize];
        clientNonce.CopyTo(salt);
        serverNonce.CopyTo(salt[Wire.NonceSize..]);
        Span<byte> prk = stackalloc byte[32];
        HKDF.Extract(HashAlgorithmName.SHA256, key, salt, prk);

        Span<byte> info = stackalloc byte[InfoLength];
        Span<byte> toServer = stackalloc byte[FrameSeal.KeySize];
        Span<byte> toClient = stackalloc byte[FrameSeal.KeySize];
        Info("GCv2 c->s key"u8, lane, session, info);
        HKDF.Expand(HashAlgorithmName.SHA256, prk, toServer, info);
        Info("GCv2 s->c key"u8, lane, session, info);
        HKDF.Expand(HashAlgorithmName.SHA256, prk, toClient, info);
        var seal = forClient ? new FrameSeal(toServer, toClient) : new FrameSeal(toClient, toServer);
        CryptographicOperations.ZeroMemory(prk);
        CryptographicOperations.ZeroMemory(toServer);
        CryptographicOperations.ZeroMemory(toClient);
        return seal;
    }

    /// <summary>Keys of a controller-to-agent connection (no session: the agent's own channel).</summary>
    public static FrameSeal DeriveControl(ReadOnlySpan<byte> secret, ReadOnlySpan<byte> clientNonce, ReadOnlySpan<byte> serverNonce, bool forClient)
    {
        Span<byte> salt = stackalloc byte[clientNonce.Length + serverNonce.Length];
        clientNonce.CopyTo(salt);
        serverNonce.CopyTo(salt[clientNonce.Length..]);
        Span<byte> prk = stackalloc byte[32];
        HKDF.Extract(HashAlgorithmName.SHA256, secret, salt, prk);
        Span<byte> toServer = stackalloc byte[FrameSeal.KeySize];
        Span<byte> toClient = stackalloc byte[FrameSeal.KeySize];
        HKDF.Expand(HashAlgorithmName.SHA256, prk, toServer, "GCv2 control c->s key"u8);
        HKDF.Expand(HashAlgorithmName.SHA256, prk, toClient, "GCv2 control s->c key"u8);
        var seal = forClient ? new FrameSeal(toServer, toClient) : new FrameSeal(toClient, toServer);
        CryptographicOperations.ZeroMemory(prk);
        CryptographicOperations.ZeroMemory(toServer);
        CryptographicOperations.ZeroMemory(toClient);
        return seal;
    }

    private const int LabelLength = 13; // "GCv2 c->s key"
    private const int InfoLength = LabelLength + 1 + 4 + 8 + 8;

    private static void Info(ReadOnlySpan<byte> label, Lane lane, SessionInfo session, Span<byte> into)
    {
        // Both labels are LabelLength bytes.
        label.CopyTo(into);
        into[LabelLength] = (byte)lane;
        BinaryPrimitives.WriteUInt32LittleEndian(into[(LabelLength + 1)..], (uint)session.PageSize);
        BinaryPrimitives.WriteUInt64LittleEndian(into[(LabelLength + 5)..], (ulong)session.PageCount);
        BinaryPrimitives.WriteUInt64LittleEndian(into[(LabelLength + 13)..], session.SessionId);
    }
}
