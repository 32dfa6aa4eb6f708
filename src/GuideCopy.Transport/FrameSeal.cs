using System.Buffers.Binary;
using System.Security.Cryptography;

namespace GuideCopy.Transport;

/// <summary>
/// Authenticated encryption of one lane's frames once its handshake passed: AES-256-GCM with
/// one key per direction (<see cref="LaneKeys"/>) and a nonce made of the frame's type and its
/// number in that direction. So the header is covered without associated data: a changed type
/// changes the nonce, and a changed length changes the ciphertext's length, which GCM's tag
/// covers (its last GHASH block is len(A) ‖ len(C), NIST SP 800-38D); magic and reserved byte
/// are constants the reader checks. A frame that was altered, forged, dropped, reordered or
/// replayed does not open: its nonce or its tag does not match, and the lane is closed (the
/// pager reconnects with fresh keys).
/// </summary>
/// <remarks>
/// Why AES-GCM per frame and not TLS: measured here (docs/security.md), AES-256-GCM seals
/// 3.1 GiB/s on one core, in place in the pinned buffers the page server already reads pages
/// into, with no copy and no allocation per frame; a nonce never repeats because each
/// direction has its own key and counts its frames from 0 on every connection. Why no
/// associated data: with OpenSSL 3.0 each AAD update is another EVP call, 1.3 us of the 2.7 us
/// a small frame took (measured), and the demand path seals four frames per fault.
/// </remarks>
public sealed class FrameSeal : IDisposable
{
    public const int TagSize = 16;
    public const int NonceSize = 12;
    public const int KeySize = 32;

    private readonly AesGcm _send, _receive;
    private ulong _sent, _received;

    public FrameSeal(ReadOnlySpan<byte> sendKey, ReadOnlySpan<byte> receiveKey)
    {
        _send = new AesGcm(sendKey, TagSize);
        _receive = new AesGcm(receiveKey, TagSize);
    }

    /// <summary>Frames sealed so far (each used one nonce).</summary>
    public ulong FramesSealed => _sent;

    /// <summary>Encrypts <paramref name="payload"/> in place and writes its tag; callers serialise sends (frame order is nonce order).</summary>
    public void Seal(byte type, Span<byte> payload, Span<byte> tag)
    {
        Span<byte> nonce = stackalloc byte[NonceSize];
        Nonce(type, _sent++, nonce);
        _send.Encrypt(nonce, payload, payload, tag[..TagSize]);
    }

    /// <summary>Decrypts in place; false (payload undefined) when the frame is not the next one the peer sealed, of this type and length.</summary>
    public bool TryOpen(byte type, Span<byte> payload, ReadOnlySpan<byte> tag)
    {
        Span<byte> nonce = stackalloc byte[NonceSize];
        Nonce(type, _received, nonce);
        try
        {
            _receive.Decrypt(nonce, payload, tag, payload);
        }
        catch (AuthenticationTagMismatchException)
        {
            return false;
        }

        _received++;
        return true;
    }

    private static void Nonce(byte type, ulong counter, Span<byte> nonce)
    {
        nonce[0] = type;
        nonce[1..4].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(nonce[4..], counter);
    }

    public void Dispose()
    {
        _send.Dispose();
        _receive.Dispose();
    }
}
