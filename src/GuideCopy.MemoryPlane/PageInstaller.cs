using System.Diagnostics;
using GuideCopy.Interop;
using Microsoft.Win32.SafeHandles;

namespace GuideCopy.MemoryPlane;

/// <summary>Where the fault loop sends pages it cannot resolve locally.</summary>
public interface IDemandSink
{
    /// <summary>Called on the fault thread with pages to fetch; must not block for long.</summary>
    void RequestPages(ReadOnlySpan<long> pages);
}

/// <summary>How a <see cref="PageInstaller"/> run ended.</summary>
public enum InstallOutcome
{
    /// <summary>Every page installed (or zero / removed); the uffd was closed and released.</summary>
    Completed,
    /// <summary>The faulting process went away (EOF on the shim socket, or ESRCH).</summary>
    ProcessExited,
    /// <summary>Stopped by the caller.</summary>
    Stopped,
}

/// <summary>
/// The destination's userfaultfd side: one fault thread reads events, resolves what it can
/// locally (zero pages, removed ranges, pages already here) and hands the rest to an
/// <see cref="IDemandSink"/>; receive threads call <see cref="Install"/> with pages from the
/// source. It never touches the registered memory itself (that would deadlock the GC if the
/// kernel made this process wait on its own uffd; here the memory is in another process).
/// </summary>
public sealed unsafe class PageInstaller : IDisposable
{
    private readonly ShimRegistration _reg;
    private readonly Userfaultfd _uffd;
    private readonly ulong _base;
    private readonly int _pageSize;
    private readonly PageBitmap _done;       // installed, zero-resolved or removed: nothing more to fetch
    private readonly PageBitmap _zero;       // the source's zero map
    private readonly PageBitmap _removed;    // ranges discarded after commit (UFFD_EVENT_REMOVE)
    // Serializes "read uffd events + mark REMOVEd ranges" against "check removed + UFFDIO_COPY":
    // otherwise a copy checked before a REMOVE was marked could install stale source content
    // into a range that must now read as zeros.
    private readonly object _gate = new();
    private readonly object _pendingLock = new();
    private readonly Dictionary<long, long> _pending = new(4096); // page -> Stopwatch ticks of first fault
    private readonly TaskCompletionSource<InstallOutcome> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private IDemandSink? _sink;
    private Thread? _faultThread;
    private volatile bool _stop;
    private long _faults, _installed, _zeroResolved, _removedPages, _duplicates, _wakes, _zeroPages, _presentPages;
    private readonly long[] _byOrigin = new long[5];

    /// <summary>
    /// SCHED_FIFO priority of the fault thread (<see cref="ThreadScheduling.PreferForLatency"/>); 0
    /// leaves it in the fair class. Set before <see cref="Start"/>.
    /// </summary>
    public int FaultThreadRealtimePriority { get; set; }

    public PageInstaller(ShimRegistration registration, PageBitmap zeroMap)
    {
        _reg = registration;
        _uffd = registration.Uffd;
        _base = registration.Base;
        _pageSize = registration.PageSize;
        PageCount = registration.PageCount;
        if (zeroMap.PageCount != PageCount)
            throw new InvalidDataException($"zero map covers {zeroMap.PageCount} pages, the mapping {PageCount}");
        _zero = zeroMap;
        _done = new PageBitmap(PageCount);
        _removed = new PageBitmap(PageCount);
        for (long p = 0; p < PageCount; p++)
            if (zeroMap.IsSet(p)) MarkDone(p, ref _zeroPages);
    }

    private const int MaxRunBytes = 256 * 1024;

    public long PageCount { get; }
    public PageBitmap Done => _done;
    public FaultHistogram Stalls { get; } = new();
    public long Faults => Volatile.Read(ref _faults);
    public long InstalledPages => Volatile.Read(ref _installed);
    public long ZeroResolvedPages => Volatile.Read(ref _zeroResolved);
    /// <summary>
    /// Pages done because they are zero at the source (its holes, or all-zero pages it announced),
    /// faulted or not. With <see cref="InstalledBy"/>, <see cref="RemovedPages"/> and
    /// <see cref="PresentPages"/>: every page is counted once, by the route that first made it
    /// done, so once complete they add up to <see cref="PageCount"/>.
    /// </summary>
    public long ZeroPages => Volatile.Read(ref _zeroPages);
    /// <summary>Pages found already in the RAM file when a restarted agent took the uffd over.</summary>
    public long PresentPages => Volatile.Read(ref _presentPages);
    public long RemovedPages => Volatile.Read(ref _removedPages);
    /// <summary>Pages that arrived but were already done (a push behind a demand, a re-send after a reconnect): each is a second crossing.</summary>
    public long DuplicatePages => Volatile.Read(ref _duplicates);
    public long InstalledBy(PageOrigin origin) => Volatile.Read(ref _byOrigin[(int)origin]);
    public Task<InstallOutcome> Completion => _completion.Task;

    /// <summary>
    /// After an agent restart: pages already in the destination RAM file (SEEK_DATA) were
    /// installed by the previous agent. Only valid for a RAM file that started empty.
    /// Returns the number of pages marked, or -1 if the file cannot be opened here.
    /// </summary>
    public long MarkPresentFromRamFile()
    {
        SafeFileHandle file;
        try { file = File.OpenHandle(_reg.RamPath, FileMode.Open, FileAccess.Read); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return -1; }
        using (file)
        {
            long marked = 0, start = (long)_reg.Hello.FileOffset, end = start + (long)_reg.Length, off = start;
            while (off < end)
            {
                long data = FileExtents.NextData(file, off);
                if (data < 0 || data >= end) break;
                long hole = Math.Min(FileExtents.NextHole(file, data), end);
                // Only whole pages: UFFDIO_COPY installs a page atomically, so a data extent is page-aligned.
                for (long p = (data - start) / _pageSize; p < (hole - start) / _pageSize; p++)
                    if (MarkDone(p, ref _presentPages)) marked++;
                off = hole;
            }
            return marked;
        }
    }

    /// <summary>Starts the fault thread. Faults raised before this wait in the uffd queue.</summary>
    public void Start(IDemandSink sink)
    {
        _sink = sink;
        // Faults whose events a previous agent read but never answered are parked in the kernel
        // (the event is consumed); UFFDIO_WAKE makes those threads retry and fault again, so we see them.
        _uffd.Wake(_base, _reg.Length);
        _faultThread = new Thread(FaultLoop) { IsBackground = true, Name = "uffd-faults" };
        _faultThread.Start();
        CheckComplete();
    }

    /// <summary>Pages with a fault waiting for the source (to re-request after a reconnect).</summary>
    public int CopyPending(Span<long> into)
    {
        lock (_pendingLock)
        {
            int n = 0;
            foreach (var kv in _pending)
            {
                if (n == into.Length) break;
                into[n++] = kv.Key;
            }
            return n;
        }
    }

    private void FaultLoop()
    {
        // A fault read late is a vCPU stalled longer: this thread wakes ahead of the push install.
        ThreadScheduling.PreferForLatency(FaultThreadRealtimePriority);
        Span<UffdMessage> events = stackalloc UffdMessage[64];
        Span<long> demand = stackalloc long[64];
        Span<UnixPoll.Entry> fds = stackalloc UnixPoll.Entry[2];
        Span<byte> probe = stackalloc byte[16];
        try
        {
            while (!_stop)
            {
                fds[0] = new UnixPoll.Entry(_uffd.Fd, UnixPoll.In);
                // No HUP on a uffd when QEMU exits: the shim's socket reaching EOF says it.
                fds[1] = new UnixPoll.Entry(_reg.ConnectionFd, UnixPoll.In);
                if (UnixPoll.Wait(fds, 200) == 0) continue;
                if (fds[1].Returned != 0)
                {
                    int got = FdPassing.Receive(_reg.ConnectionFd, probe, out int stray, dontWait: true);
                    if (stray >= 0) FdPassing.CloseFd(stray);
                    if (got == 0)
                    {
                        // Every page may have landed just before the program exited.
                        if (CheckComplete()) return;
                        _completion.TrySetResult(InstallOutcome.ProcessExited);
                        return;
                    }
                }
                if ((fds[0].Returned & UnixPoll.In) == 0) continue;

                int n;
                lock (_gate)
                {
                    // Reading a REMOVE event clears the kernel's mmap_changing; marking the range
                    // under the same lock keeps Install from copying into it in between.
                    n = _uffd.ReadEvents(events);
                    for (int i = 0; i < n; i++)
                        if (events[i].Event is UffdMessage.Remove or UffdMessage.Unmap)
                            MarkRemoved(events[i].RemoveStart, events[i].RemoveEnd);
                }
                int d = 0;
                long now = Stopwatch.GetTimestamp();
                for (int i = 0; i < n; i++)
                {
                    if (events[i].Event != UffdMessage.PageFault) continue;
                    Interlocked.Increment(ref _faults);
                    long page = (long)((events[i].Address - _base) / (ulong)_pageSize);
                    if ((ulong)page >= (ulong)PageCount) continue;
                    if (_removed.IsSet(page) || _zero.IsSet(page))
                        ResolveZero(page);
                    else if (_done.IsSet(page))
                        // Installed after the kernel queued this fault; the copy already woke the
                        // waiter, a second wake is harmless and covers the EEXIST path.
                        Wake(page);
                    else
                    {
                        lock (_pendingLock) _pending.TryAdd(page, now);
                        // Installed between the check and TryAdd? Then nothing will wake it: do it here.
                        if (_done.IsSet(page)) { lock (_pendingLock) _pending.Remove(page); Wake(page); }
                        else demand[d++] = page;
                    }
                }
                if (d > 0) _sink!.RequestPages(demand[..d]);
                if (CheckComplete()) return;
            }
            _completion.TrySetResult(InstallOutcome.Stopped);
        }
        catch (Exception e)
        {
            _completion.TrySetException(e);
        }
    }

    private void MarkRemoved(ulong start, ulong end)
    {
        // UFFD_EVENT_REMOVE (madvise DONTNEED/REMOVE after QEMU punched the file, balloon):
        // the range must read as zeros from now on, never as the source's content.
        if (end <= _base) return;
        long first = (long)((Math.Max(start, _base) - _base) / (ulong)_pageSize);
        long last = (long)((Math.Min(end, _base + _reg.Length) - _base + (ulong)_pageSize - 1) / (ulong)_pageSize);
        for (long p = first; p < last && p < PageCount; p++)
        {
            _removed.TrySet(p);
            MarkDone(p, ref _removedPages);
        }
    }

    private void ResolveZero(long page)
    {
        ulong addr = _base + (ulong)(page * _pageSize);
        int err;
        lock (_gate)
        {
            if (_stop) return; // completed: the uffd is closed, its fd number may be reused
            if (_reg.CanZeroPage)
            {
                err = _uffd.ZeroPage(addr, (ulong)_pageSize, out _);
            }
            else
            {
                // hugetlbfs has no UFFDIO_ZEROPAGE: copy from a zeroed buffer.
                var zeros = ZeroBuffer(_pageSize);
                fixed (byte* z = zeros) err = _uffd.Copy(addr, z, (ulong)_pageSize, wake: true, out _);
            }
        }
        if (err == 0) Interlocked.Increment(ref _zeroResolved);
        else if (err == Errno.EEXIST) Wake(page);  // already there: the kernel did not wake the waiter
        else if (err == Errno.ESRCH) _completion.TrySetResult(InstallOutcome.ProcessExited);
        else if (err == Errno.EAGAIN) Wake(page);  // an event is pending: the thread will re-fault
        else throw new IOException($"UFFDIO_ZEROPAGE page {page}: errno {err}");
        if (!_removed.IsSet(page)) MarkDone(page, ref _zeroPages);
    }

    /// <summary>Sets the page's done bit and, if this call set it, counts it for its route (one route per page).</summary>
    private bool MarkDone(long page, ref long route)
    {
        if (!_done.TrySet(page)) return false;
        Interlocked.Increment(ref route);
        return true;
    }

    private static byte[]? s_zeros;
    private static byte[] ZeroBuffer(int size) =>
        s_zeros is { } z && z.Length >= size ? z : (s_zeros = GC.AllocateArray<byte>(size, pinned: true));

    private void Wake(long page)
    {
        Interlocked.Increment(ref _wakes);
        lock (_gate)
        {
            if (!_stop) _uffd.Wake(_base + (ulong)(page * _pageSize), (ulong)_pageSize);
        }
    }

    /// <summary>
    /// Installs <paramref name="count"/> contiguous pages from <paramref name="data"/> (pinned),
    /// skipping pages already done. Thread-safe. Returns the pages newly installed.
    /// </summary>
    public int Install(long firstPage, int count, byte* data, PageOrigin origin)
    {
        if (firstPage < 0 || count < 0 || firstPage + count > PageCount)
            throw new InvalidDataException($"pages [{firstPage}, +{count}) outside the mapping of {PageCount}");
        int installed = 0, i = 0;
        while (i < count && !_stop)
        {
            if (_done.IsSet(firstPage + i)) { Interlocked.Increment(ref _duplicates); i++; continue; }
            // Runs of at most MaxRunBytes: a copy holds _gate, and a demand install waiting behind a
            // long push copy is fault latency (64 KiB-2 MiB calls all run at 4-5 GiB/s here).
            int run = 1, maxRun = Math.Max(1, MaxRunBytes / _pageSize);
            while (i + run < count && run < maxRun && !_done.IsSet(firstPage + i + run)) run++;
            long page = firstPage + i;
            int err;
            long copied;
            lock (_gate)
            {
                // Completion closes the uffd under the gate: never copy into a closed (or reused) fd.
                if (_stop) return installed;
                // Re-check under the gate: a REMOVE marked since must win (see _gate).
                while (run > 0 && _removed.IsSet(page + run - 1)) run--;
                if (run == 0 || _removed.IsSet(page)) { i++; continue; }
                err = _uffd.Copy(_base + (ulong)(page * _pageSize), data + (long)i * _pageSize,
                    (ulong)((long)run * _pageSize), wake: true, out copied);
            }
            int got = (int)(copied / _pageSize);
            if (got > 0) installed += MarkInstalled(page, got, origin);
            if (err == 0) { i += run; continue; }
            if (err == Errno.EEXIST)
            {
                // Page `page + got` is already present (re-send after resume, or a zero page the
                // fault loop resolved). COPY woke nobody for it: wake explicitly.
                if (!MarkDone(page + got, ref _byOrigin[(int)origin])) Interlocked.Increment(ref _duplicates);
                CompletePending(page + got);
                Wake(page + got);
                i += got + 1;
            }
            else if (err == Errno.EAGAIN)
            {
                // Partial copy: page `page + got` exists (next pass gets EEXIST for it). Nothing
                // copied: a non-cooperative event (REMOVE) is queued and blocks copies until the
                // fault thread reads it; yield and retry.
                if (got > 0) i += got;
                else Thread.Sleep(0);
            }
            else if (err == Errno.ESRCH)
            {
                _completion.TrySetResult(InstallOutcome.ProcessExited); // the process is gone
                return installed;
            }
            else throw new IOException($"UFFDIO_COPY pages [{page}, +{run}): errno {err}");
        }
        CheckComplete();
        return installed;
    }

    /// <summary>
    /// The source found pages [first, first+count) all zero (the up-front zero map only has the
    /// file's holes). Nothing is installed unless a fault waits on one of them: the fresh RAM
    /// file reads zeros there once the uffd is released. Thread-safe.
    /// </summary>
    public void MarkZero(long first, int count)
    {
        if (_stop) return;
        if (first < 0 || count < 0 || first + count > PageCount)
            throw new InvalidDataException($"zero pages [{first}, +{count}) outside the mapping of {PageCount}");
        for (long p = first; p < first + count; p++)
        {
            // Zero bit before done bit before the pending check: the fault loop checks zero, then
            // registers pending, then re-checks done (and wakes, so the thread faults again and
            // meets the zero bit). Either side resolves it; ZEROPAGE twice is EEXIST + wake.
            _zero.TrySet(p);
            bool waiting;
            lock (_pendingLock) waiting = _pending.ContainsKey(p);
            if (waiting && !_removed.IsSet(p))
            {
                ResolveZero(p);
                CompletePending(p);
            }
            MarkDone(p, ref _zeroPages);
        }
        CheckComplete();
    }

    /// <summary>
    /// The source's zero map (its RAM file's holes), which may come after the first faults:
    /// every page it names is <see cref="MarkZero"/>ed, run by run. Thread-safe.
    /// </summary>
    public void MarkZeroMap(ReadOnlySpan<byte> bits)
    {
        long pages = Math.Min(PageCount, (long)bits.Length * 8);
        long p = 0;
        while (p < pages)
        {
            if ((bits[(int)(p >> 3)] & (1 << (int)(p & 7))) == 0 || _done.IsSet(p)) { p++; continue; }
            long first = p;
            while (p < pages && p - first < int.MaxValue && (bits[(int)(p >> 3)] & (1 << (int)(p & 7))) != 0 && !_done.IsSet(p)) p++;
            MarkZero(first, (int)(p - first));
        }
    }

    private int MarkInstalled(long first, int count, PageOrigin origin)
    {
        int n = 0;
        for (long p = first; p < first + count; p++)
        {
            if (MarkDone(p, ref _byOrigin[(int)origin])) n++;
            else Interlocked.Increment(ref _duplicates);
            CompletePending(p);
        }
        Interlocked.Add(ref _installed, count);
        return n;
    }

    private void CompletePending(long page)
    {
        long since;
        lock (_pendingLock)
        {
            if (_pending.Count == 0 || !_pending.Remove(page, out since)) return;
        }
        Stalls.RecordTicks(Stopwatch.GetTimestamp() - since);
    }

    private bool CheckComplete()
    {
        if (!_done.IsFull) return false;
        if (_completion.Task.IsCompleted) return true;
        lock (_gate)
        {
            if (_completion.Task.IsCompleted) return true;
            _stop = true;
            // Every page is here: drop our uffd and have the shim drop its copy, so the
            // registration vanishes and QEMU runs on plain shared memory.
            _reg.Release();
            _uffd.Dispose();
            _completion.TrySetResult(InstallOutcome.Completed);
        }
        return true;
    }

    public void Stop()
    {
        _stop = true;
        if (_faultThread is { } t && t != Thread.CurrentThread) t.Join(2000);
        _completion.TrySetResult(InstallOutcome.Stopped);
    }

    public void Dispose() => Stop();
}
