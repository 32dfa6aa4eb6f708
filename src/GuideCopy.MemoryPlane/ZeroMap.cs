using System.Buffers;
using GuideCopy.Interop;
using Microsoft.Win32.SafeHandles;

namespace GuideCopy.MemoryPlane;

/// <summary>
/// Which pages of a frozen RAM file are zero. <see cref="Holes"/> finds the file's holes with
/// SEEK_DATA/SEEK_HOLE without reading (or allocating) them: instant even for a large file, so
/// the destination gets it before its first fault. All-zero data pages are found on the fly,
/// when the source reads a page to send it (<see cref="IsZero"/>), and announced instead of sent.
/// <see cref="Scan"/> does both up front (tests, tools). Zero pages never cross the wire: the
/// destination resolves their faults with UFFDIO_ZEROPAGE.
/// </summary>
public static class ZeroMap
{
    public static PageBitmap Holes(SafeFileHandle file, long length, int pageSize)
    {
        var zero = new PageBitmap((length + pageSize - 1) / pageSize);
        MarkHoles(file, length, pageSize, zero);
        return zero;
    }

    /// <summary>Sets the bit of every whole page inside a hole of the file (bits only get set: safe beside readers).</summary>
    public static void MarkHoles(SafeFileHandle file, long length, int pageSize, PageBitmap zero)
    {
        long offset = 0;
        while (offset < length)
        {
            long data = FileExtents.NextData(file, offset);
            long holeEnd = data < 0 || data > length ? length : data;
            // Whole pages inside the hole [offset, holeEnd).
            for (long p = (offset + pageSize - 1) / pageSize; p < holeEnd / pageSize; p++) zero.TrySet(p);
            if (data < 0 || data >= length) break;
            offset = Math.Min(FileExtents.NextHole(file, data), length);
        }
    }

    /// <summary>True if the page's bytes are all zero (vectorized).</summary>
    public static bool IsZero(ReadOnlySpan<byte> page) => !page.ContainsAnyExcept((byte)0);

    public static PageBitmap Scan(SafeFileHandle file, long length, int pageSize)
    {
        var zero = Holes(file, length, pageSize);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(pageSize);
        try
        {
            for (long p = 0; p < zero.PageCount; p++)
            {
                if (zero.IsSet(p)) continue;
                var span = buffer.AsSpan(0, pageSize);
                int got = RandomAccess.Read(file, span, p * pageSize);
                if (got < span.Length) span[got..].Clear();
                if (IsZero(span)) zero.TrySet(p);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return zero;
    }
}
