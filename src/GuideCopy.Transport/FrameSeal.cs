using System.Buffers.Binary;
using System.Security.Cryptography;

namespace GuideCopy.Transport;

/// <summary>
/// Authenticated encryption of one lane's frames once its handshake passed: AES-256-GCM with
/// one key per direction (<see cref="LaneKeys"/>) and the frame's number in that direction as
/// its nonce. The 8-byte frame header (type and length) is the associated data, so it cannot be
/// changed either. A frame that was altered, forged, dropped, reordered or replayed does not
/// open: its nonce (the count of frames before it) or its tag does not match, and the lane is
/// closed (the pager reconnects with fresh keys).
/// </summary>
/// <remarks>
/// Why AES-GCM per frame and not TLS: measured here (docs/security.md), AES-256-GCM seals
/// 3.1 GiB/s on one core, in place in the pinned buffers the page server already reads pages
/// into, with no copy and no allocation per frame; a nonce never repeats because each
/// direction has its own key and counts its frames from 0 on every connection.
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
    public void Seal(ReadOnlySpan<byte> header, Span<byte> payload, Span<byte> tag)
    {
        Span<byte> nonce = stackalloc byte[NonceSize];
        Nonce(_sent++, nonce);
        _send.Encrypt(nonce, payload, payload, tag[..TagSize], header);
    }

    /// <summary>Decrypts in place; false (payload undefined) when the frame is not the next one the peer sealed.</summary>
    public bool TryOpen(ReadOnlySpan<byte> header, Span<byte> payload, ReadOnlySpan<byte> tag)
    {
        Span<byte> nonce = stackalloc byte[NonceSize];
        Nonce(_received, nonce);
        try
        {
            _receive.Decrypt(nonce, payload, tag, payload, header);
        }
        catch (AuthenticationTagMismatchException)
        {
            return false;
        }

        _received++;
        return true;
    }

    private static void Nonce(ulong counter, Span<byte> nonce)
    {
        nonce[..4].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(nonce[4..], counter);
    }

    public void Dispose()
    {
        _send.Dispose();
        _receive.Dispose();
    }
}
