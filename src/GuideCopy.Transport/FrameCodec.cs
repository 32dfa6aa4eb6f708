using System.Buffers.Binary;
using K4os.Compression.LZ4;
using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>The header of a Pages or ZeroPages frame: pages [First, First + Count), sent because of Origin.</summary>
public readonly record struct PagesHeader(long First, int Count, PageOrigin Origin);

/// <summary>
/// The one encoder and decoder of every frame body after the handshake (docs/memory-plane.md,
/// "Wire format"): the page server, the pager and the tests all go through it, so a check
/// cannot be missing on one side. Decoders take the session's page count and page size and
/// throw <see cref="ProtocolException"/> for anything a well-behaved peer never sends; range
/// checks are written so that no sum can overflow (a u64 first page near 2^63 plus a count).
/// </summary>
public static class FrameCodec
{
    // Frame header: u16 magic, u8 type, u8 reserved (0), u32 length (payload, plus the tag once sealed).

    /// <summary>
    /// Checks a frame header before a byte of its payload is read: known type, length within that
    /// type's limit (<see cref="Wire.MaxPayload"/>) and, before authentication, within
    /// <see cref="Wire.MaxErrorBytes"/>. Returns the type and the bytes to read after the header.
    /// </summary>
    public static (FrameType Type, int Length) ReadHeader(ReadOnlySpan<byte> header, int pageSize, bool authenticated, bool isSealed)
    {
        ushort magic = BinaryPrimitives.ReadUInt16LittleEndian(header);
        var type = (FrameType)header[2];
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
        if (magic != Wire.Magic) throw new ProtocolException($"bad frame magic 0x{magic:x4}");
        if (header[3] != 0) throw new ProtocolException("reserved header byte set");
        int max = Wire.MaxPayload(type, pageSize);
        if (max < 0) throw new ProtocolException($"unknown frame type {(byte)type}");
        uint trailer = isSealed ? (uint)FrameSeal.TagSize : 0u;
        if (length < trailer) throw new ProtocolException($"{type} frame of {length} bytes is shorter than its tag");
        if (length - trailer > (uint)max) throw new ProtocolException($"{type} frame of {length - trailer} bytes exceeds the limit of {max}");
        if (!authenticated && length > Wire.MaxErrorBytes) throw new ProtocolException($"{type} frame of {length} bytes before authentication");
        return (type, (int)length);
    }

    // Pages / ZeroPages: u64 first page, u32 count, u8 origin, 3 reserved (0).

    public static void WritePagesHeader(Span<byte> payload, long first, int count, PageOrigin origin)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(payload, (ulong)first);
        BinaryPrimitives.WriteUInt32LittleEndian(payload[8..], (uint)count);
        payload[12] = (byte)origin;
        payload[13] = payload[14] = payload[15] = 0;
    }

    /// <summary>A Pages frame: the header, then exactly Count pages of <paramref name="pageSize"/> bytes.</summary>
    public static PagesHeader ReadPages(ReadOnlySpan<byte> payload, int pageSize, long pageCount)
    {
        if (payload.Length < Wire.PagesHeaderSize) throw new ProtocolException("short pages frame");
        var h = ReadPagesHeader(payload, pageCount, "pages");
        if ((long)h.Count * pageSize != payload.Length - Wire.PagesHeaderSize)
            throw new ProtocolException($"pages frame says {h.Count} pages but carries {payload.Length - Wire.PagesHeaderSize} bytes");
        return h;
    }

    /// <summary>
    /// A PackedPages frame: the header, then one LZ4 block that decodes into <paramref name="into"/>
    /// to exactly Count pages of <paramref name="pageSize"/> bytes. A block that is malformed,
    /// decodes to another length or would write past Count pages is the peer breaking the protocol
    /// (LZ4's decoder checks every offset and length against both buffers: it never reads or
    /// writes outside them, whatever the block says).
    /// </summary>
    public static PagesHeader ReadPackedPages(ReadOnlySpan<byte> payload, int pageSize, long pageCount, Span<byte> into)
    {
        if (payload.Length <= Wire.PagesHeaderSize) throw new ProtocolException("short packed pages frame");
        var h = ReadPagesHeader(payload, pageCount, "packed pages");
        long want = (long)h.Count * pageSize;
        if (want > into.Length) throw new ProtocolException($"packed pages frame says {h.Count} pages, more than a frame holds");
        int got = LZ4Codec.Decode(payload[Wire.PagesHeaderSize..], into[..(int)want]);
        if (got != want) throw new ProtocolException($"packed pages frame says {h.Count} pages but its block decodes to {(got < 0 ? "nothing valid" : got + " bytes")}");
        return h;
    }

    /// <summary>A ZeroPages frame: the header only.</summary>
    public static PagesHeader ReadZeroPages(ReadOnlySpan<byte> payload, long pageCount)
    {
        if (payload.Length != Wire.PagesHeaderSize) throw new ProtocolException("bad zero-pages frame length");
        return ReadPagesHeader(payload, pageCount, "zero pages");
    }

    private static PagesHeader ReadPagesHeader(ReadOnlySpan<byte> p, long pageCount, string what)
    {
        ulong first = BinaryPrimitives.ReadUInt64LittleEndian(p);
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(p[8..]);
        var origin = (PageOrigin)p[12];
        if (origin is < PageOrigin.Demand or > PageOrigin.Warm || p[13] != 0 || p[14] != 0 || p[15] != 0)
            throw new ProtocolException($"bad {what} frame header");
        if (count == 0 || first >= (ulong)pageCount || count > (ulong)pageCount - first)
            throw new ProtocolException($"{what} [{first}, +{count}) outside {pageCount}");
        return new PagesHeader((long)first, (int)count, origin);
    }

    // Demand: u32 count, then count u64 page indices.

    /// <summary>Demand payload size for <paramref name="pages"/> pages.</summary>
    public static int DemandSize(int pages) => 4 + 8 * pages;

    public static int WriteDemand(Span<byte> payload, ReadOnlySpan<long> pages)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)pages.Length);
        for (int i = 0; i < pages.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(payload[(4 + 8 * i)..], (ulong)pages[i]);
        return DemandSize(pages.Length);
    }

    /// <summary>Checks a Demand frame's shape and returns its page count; read each page with <see cref="DemandPage"/>.</summary>
    public static int ReadDemandCount(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < 4) throw new ProtocolException("short demand frame");
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        if (count == 0 || count > Wire.MaxDemandPerFrame || payload.Length != DemandSize((int)count))
            throw new ProtocolException($"demand frame with count {count} and {payload.Length} bytes");
        return (int)count;
    }

    /// <summary>Page <paramref name="i"/> of a Demand frame whose count <see cref="ReadDemandCount"/> checked.</summary>
    public static long DemandPage(ReadOnlySpan<byte> payload, int i, long pageCount)
    {
        ulong page = BinaryPrimitives.ReadUInt64LittleEndian(payload[(4 + 8 * i)..]);
        if (page >= (ulong)pageCount) throw new ProtocolException($"demand for page {page} of {pageCount}");
        return (long)page;
    }

    // ZeroMap / Resume: u64 page count, then the bitmap of that many pages.

    public static byte[] EncodeBitmap(PageBitmap bitmap)
    {
        var payload = new byte[8 + bitmap.ByteLength];
        BinaryPrimitives.WriteUInt64LittleEndian(payload, (ulong)bitmap.PageCount);
        bitmap.CopyTo(payload.AsSpan(8));
        return payload;
    }

    /// <summary>The bitmap bytes of a ZeroMap or Resume frame, checked against the session's page count.</summary>
    public static ReadOnlySpan<byte> ReadBitmap(ReadOnlySpan<byte> payload, long pageCount, string what)
    {
        long bytes = (pageCount + 7) / 8;
        if (payload.Length != 8 + bytes || BinaryPrimitives.ReadUInt64LittleEndian(payload) != (ulong)pageCount)
            throw new ProtocolException($"{what} of {payload.Length} bytes does not match {pageCount} pages");
        return payload[8..];
    }

    // CommitDecision: one byte.

    public static CommitDecision ReadCommitDecision(ReadOnlySpan<byte> payload)
    {
        if (payload.Length != 1 || payload[0] is not ((byte)CommitDecision.Committed or (byte)CommitDecision.RolledBack))
            throw new ProtocolException("bad commit decision");
        return (CommitDecision)payload[0];
    }
}
