using System.Globalization;
using GuideCopy.Interop;

namespace GuideCopy.MemoryPlane;

/// <summary>
/// Which pages of a running QEMU's RAM file it writes, while it runs: the uffd the shim made at
/// QEMU's start (<c>GUIDECOPY_TRACK_WRITES=1</c>, native/shim/shim.c) taken with pidfd_getfd,
/// QEMU's mapping of the RAM file registered through it in write-protect mode, and every
/// <see cref="Scan"/> a PAGEMAP_SCAN of QEMU's pagemap that lists the pages written since the
/// last and protects them again in the same walk (docs/memory-plane.md, "Tracking writes while
/// the source runs": 0 missed of ~2 M writes; 0.5 ms per clean scan at 512 MiB).
/// </summary>
/// <remarks>
/// The uffd has UFFD_FEATURE_WP_ASYNC: a write to a protected page is resolved by the kernel
/// (mm/userfaultfd: the uffd-wp bit cleared, no message queued), so QEMU never waits on us, and
/// a tracker that dies leaves at most one extra minor fault per page. Pages QEMU has not mapped
/// since the last scan are reported written too (no PTE to carry the bit): conservative.
/// </remarks>
public sealed class RamWriteTracker : IDisposable
{
    private readonly int _uffd, _pagemap;
    private readonly ulong _base, _length;
    private readonly long _firstPage;
    private readonly ulong[] _regions = new ulong[3 * 4096];
    private bool _disposed;
    private readonly object _lock = new();

    private RamWriteTracker(int uffd, int pagemap, ulong start, ulong length, long firstPage, int pageSize)
    {
        _uffd = uffd;
        _pagemap = pagemap;
        _base = start;
        _length = length;
        _firstPage = firstPage;
        PageSize = pageSize;
    }

    public int PageSize { get; }

    /// <summary>Pages of the RAM file the tracked mapping covers (from <see cref="FirstPage"/>).</summary>
    public long PageCount => (long)(_length / (ulong)PageSize);

    /// <summary>The RAM file's page at the mapping's start (its mmap offset over the page size).</summary>
    public long FirstPage => _firstPage;

    /// <summary>
    /// Tracks QEMU <paramref name="pid"/>'s shared mapping of <paramref name="ramPath"/>; null with
    /// the reason when it cannot (no tracking uffd: QEMU was not started with the shim and
    /// GUIDECOPY_TRACK_WRITES=1; a kernel before 6.7; the range already registered by a migration
    /// still under way into this QEMU).
    /// </summary>
    public static RamWriteTracker? TryAttach(int pid, string ramPath, int pageSize, out string? why)
    {
        why = null;
        var mapping = FindMapping(pid, ramPath);
        if (mapping is not { } m)
        {
            why = $"QEMU {pid} has no shared mapping of {ramPath}";
            return null;
        }
        int target = FindTrackingUffd(pid);
        if (target < 0)
        {
            why = $"QEMU {pid} has no write-tracking userfaultfd (start it with the shim and GUIDECOPY_TRACK_WRITES=1, docs/memory-plane.md)";
            return null;
        }
        int uffd = -1, pagemap = -1;
        try
        {
            uffd = WriteProtectScan.TakeFd(pid, target);
            WriteProtectScan.RegisterWriteProtect(uffd, m.Start, m.End - m.Start);
            pagemap = Mono.Unix.Native.Syscall.open($"/proc/{pid}/pagemap", Mono.Unix.Native.OpenFlags.O_RDONLY | Mono.Unix.Native.OpenFlags.O_CLOEXEC);
            if (pagemap < 0)
            {
                throw new IOException($"cannot open /proc/{pid}/pagemap: {Mono.Unix.Native.Stdlib.GetLastError()}");
            }
            return new RamWriteTracker(uffd, pagemap, m.Start, m.End - m.Start, (long)(m.Offset / (ulong)pageSize), pageSize);
        }
        catch (IOException e)
        {
            if (uffd >= 0)
            {
                WriteProtectScan.Unregister(uffd, m.Start, m.End - m.Start);
                Mono.Unix.Native.Syscall.close(uffd);
            }
            why = $"write tracking of QEMU {pid}: {e.Message}";
            return null;
        }
    }

    /// <summary>
    /// Calls <paramref name="written"/>(first page, count) for each run of pages written since the
    /// last scan (the first scan: every page QEMU has mapped), in RAM-file page numbers, and
    /// protects them again. Returns the pages reported. Costs a page-table walk of the range, no
    /// allocation.
    /// </summary>
    public long Scan(Action<long, long> written)
    {
        // Under the lock Dispose takes: a rollback that disposes the tracker mid-scan must not
        // close (and let another open reuse) the fds this walk uses.
        lock (_lock)
        {
            return ScanLocked(written);
        }
    }

    private long ScanLocked(Action<long, long> written)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ulong at = _base, end = _base + _length, pageSize = (ulong)PageSize;
        long pages = 0;
        while (at < end)
        {
            int n = WriteProtectScan.ScanWritten(_pagemap, at, end, _regions, out ulong walkEnd);
            for (int i = 0; i < n; i++)
            {
                ulong s = _regions[3 * i], e = _regions[3 * i + 1];
                long first = _firstPage + (long)((s - _base) / pageSize), count = (long)((e - s) / pageSize);
                written(first, count);
                pages += count;
            }
            // A walk that filled the vector stops early; one that did not reached the end.
            at = n < _regions.Length / 3 || walkEnd <= at ? end : walkEnd;
        }
        return pages;
    }

    private readonly record struct Mapping(ulong Start, ulong End, ulong Offset);

    /// <summary>The largest shared mapping of the file in /proc/PID/maps ("start-end perms offset dev inode path").</summary>
    private static Mapping? FindMapping(int pid, string ramPath)
    {
        Mapping? best = null;
        string[] lines;
        try { lines = File.ReadAllLines($"/proc/{pid}/maps"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
        foreach (string line in lines)
        {
            var f = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 6 || f[5].Trim() != ramPath || f[1].Length < 4 || f[1][3] != 's')
            {
                continue;
            }
            int dash = f[0].IndexOf('-');
            ulong s = ulong.Parse(f[0][..dash], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            ulong e = ulong.Parse(f[0][(dash + 1)..], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            ulong off = ulong.Parse(f[2], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (best is null || e - s > best.Value.End - best.Value.Start)
            {
                best = new Mapping(s, e, off);
            }
        }
        return best;
    }

    /// <summary>The fd number of QEMU's uffd whose features (fdinfo's "API:\t&lt;api&gt;:&lt;features&gt;:&lt;ioctls&gt;") include WP_ASYNC, or -1.</summary>
    private static int FindTrackingUffd(int pid)
    {
        IEnumerable<string> fds;
        try { fds = Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd").ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return -1; }
        foreach (string fdPath in fds)
        {
            if (Mono.Unix.UnixPath.TryReadLink(fdPath) != Userfaultfd.ProcLinkName || !int.TryParse(Path.GetFileName(fdPath), out int fd))
            {
                continue;
            }
            try
            {
                foreach (string line in File.ReadLines($"/proc/{pid}/fdinfo/{fd}"))
                {
                    if (!line.StartsWith("API:", StringComparison.Ordinal))
                    {
                        continue;
                    }
                    var parts = line[4..].Trim().Split(':');
                    if (parts.Length >= 2 && ulong.TryParse(parts[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong features)
                        && (features & WriteProtectScan.FeatureWpAsync) != 0)
                    {
                        return fd;
                    }
                }
            }
            catch (IOException)
            {
                // closed meanwhile
            }
        }
        return -1;
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            // Unregistered, QEMU's writes no longer take the one fault per page a protection costs.
            WriteProtectScan.Unregister(_uffd, _base, _length);
            Mono.Unix.Native.Syscall.close(_uffd);
            Mono.Unix.Native.Syscall.close(_pagemap);
        }
    }
}
