using Microsoft.Win32.SafeHandles;

namespace GuideCopy.MemoryPlane;

/// <summary>
/// The paused source domain's RAM file, read with pread (never mapped: reading a sparse tmpfs
/// file through mmap would allocate its holes). Thread-safe: RandomAccess has no file position.
/// </summary>
public sealed class FrozenRam : IDisposable
{
    private readonly SafeFileHandle _file;

    /// <param name="scanHoles">
    /// False for a page server armed before the source pauses: the file is still being written,
    /// so its holes are found by <see cref="ScanHoles"/> once it is frozen (not in the pause).
    /// </param>
    public FrozenRam(string path, int pageSize = 4096, bool scanHoles = true)
    {
        if (pageSize < 4096 || (pageSize & (pageSize - 1)) != 0) throw new ArgumentException("page size must be a power of two >= 4096");
        Path = path;
        PageSize = pageSize;
        _file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        Length = RandomAccess.GetLength(_file);
        if (Length == 0 || Length % pageSize != 0) throw new InvalidDataException($"{path}: length {Length} is not a positive multiple of {pageSize}");
        PageCount = Length / pageSize;
        ZeroPages = new PageBitmap(PageCount);
        if (scanHoles) ScanHoles();
    }

    /// <summary>Marks the file's holes in <see cref="ZeroPages"/> (SEEK_DATA/SEEK_HOLE: the kernel walks the file's page cache, no page is read).</summary>
    public void ScanHoles() => ZeroMap.MarkHoles(_file, Length, PageSize, ZeroPages);

    /// <summary>Marks the file's holes as they are now in <paramref name="into"/> (a RAM still written to: a snapshot).</summary>
    public void MarkHolesInto(PageBitmap into) => ZeroMap.MarkHoles(_file, Length, PageSize, into);

    public string Path { get; }
    public int PageSize { get; }
    public long Length { get; }
    public long PageCount { get; }
    /// <summary>Holes at open; all-zero data pages are added as the server reads them.</summary>
    public PageBitmap ZeroPages { get; }

    /// <summary>Reads pages [first, first+count) into <paramref name="into"/> (count * PageSize bytes).</summary>
    public void Read(long first, int count, Span<byte> into)
    {
        var span = into[..(count * PageSize)];
        int got = RandomAccess.Read(_file, span, first * PageSize);
        if (got < span.Length) span[got..].Clear(); // the file cannot shrink while frozen; be safe anyway
    }

    public void Dispose() => _file.Dispose();
}
