using System.Buffers.Binary;
using NSec.Cryptography;

namespace GuideCopy.Transport;

/// <summary>
/// Authenticated encryption of one lane's frames once its handshake passed: AEGIS-256
/// (libsodium, through NSec) with one key per direction (<see cref="LaneKeys"/>) and a nonce
/// made of the frame's type and its number in that direction. So the header is covered without
/// associated data: a changed type changes the nonce, and a changed length changes the
/// ciphertext's length, which the tag covers (AEGIS finalises over len(AD) ‖ len(M), as GCM
/// does); magic and reserved byte are constants the reader checks. A frame that was altered,
/// forged, dropped, reordered or replayed does not open: its nonce or its tag does not match,
/// and the lane is closed (the pager reconnects with fresh keys).
/// </summary>
/// <remarks>
/// Why AEGIS-256 from libsodium and not AES-GCM from System.Security.Cryptography: a remote
/// fault seals and opens four frames, so the per-call cost decides, and OpenSSL's EVP layer
/// costs several times libsodium's AEGIS-256 per call whatever the size (figures:
/// docs/security.md, "Why AEGIS-256 per frame"). It seals in place in the pinned buffers the page
/// server reads pages into, with no allocation. A nonce never repeats: each direction has its own key and
/// counts its frames from 0 on every connection.
/// </remarks>
public sealed class FrameSeal : IDisposable
{
    private static readonly AeadAlgorithm Aead = AeadAlgorithm.Aegis256;

    public const int TagSize = 32;   // crypto_aead_aegis256_ABYTES
    public const int NonceSize = 32; // crypto_aead_aegis256_NPUBBYTES
    public const int KeySize = 32;

    private readonly Key _send, _receive;
    private ulong _sent, _received;

    public FrameSeal(ReadOnlySpan<byte> sendKey, ReadOnlySpan<byte> receiveKey)
    {
        _send = Key.Import(Aead, sendKey, KeyBlobFormat.RawSymmetricKey);
        _receive = Key.Import(Aead, receiveKey, KeyBlobFormat.RawSymmetricKey);
    }

    /// <summary>What the report calls this protection.</summary>
    public const string Name = "aegis-256";

    /// <summary>Frames sealed so far (each used one nonce).</summary>
    public ulong FramesSealed => _sent;

    /// <summary>
    /// Encrypts <paramref name="payload"/> in place and writes the tag right after it
    /// (<paramref name="frame"/> is payload then <see cref="TagSize"/> bytes); callers serialise
    /// sends (frame order is nonce order).
    /// </summary>
    public void Seal(byte type, Span<byte> frame, int payloadLength)
    {
        Span<byte> nonce = stackalloc byte[NonceSize];
        Nonce(type, _sent++, nonce);
        // libsodium encrypts in place when the ciphertext starts where the plaintext does.
        Aead.Encrypt(_send, nonce, default, frame[..payloadLength], frame[..(payloadLength + TagSize)]);
    }

    /// <summary>
    /// Decrypts <paramref name="frame"/> (payload then tag) in place; false (payload undefined)
    /// when it is not the next frame the peer sealed, of this type and length.
    /// </summary>
    public bool TryOpen(byte type, Span<byte> frame)
    {
        if (frame.Length < TagSize) return false;
        Span<byte> nonce = stackalloc byte[NonceSize];
        Nonce(type, _received, nonce);
        if (!Aead.Decrypt(_receive, nonce, default, frame, frame[..^TagSize])) return false;
        _received++;
        return true;
    }

    private static void Nonce(byte type, ulong counter, Span<byte> nonce)
    {
        nonce.Clear();
        nonce[0] = type;
        BinaryPrimitives.WriteUInt64LittleEndian(nonce[4..], counter);
    }

    public void Dispose()
    {
        _send.Dispose();
        _receive.Dispose();
    }
}
