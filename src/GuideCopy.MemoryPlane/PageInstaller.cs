using GuideCopy.Interop;
using Microsoft.Win32.SafeHandles;

namespace GuideCopy.MemoryPlane;

/// <summary>
/// The destination's userfaultfd side: one fault thread reads events, resolves what it can
/// locally (zero pages, removed ranges, pages already here) and hands the rest to an
/// <see cref="IDemandSink"/>; receive threads call <see cref="Install"/> with pages from the
/// source. It never touches the registered memory itself (that would deadlock the GC if the
/// kernel made this process wait on its own uffd; here the memory is in another process).
/// </summary>
/// <remarks>
/// This type holds the install calls and the counters' public view. The event loop is
/// <see cref="FaultThread"/>; what both share (the uffd and its gate, the bitmaps, the pending
/// faults, the uffd calls both make) is <see cref="RegisteredRam"/>; the counts are
/// <see cref="InstallCounters"/>.
/// </remarks>
public sealed unsafe class PageInstaller : IDisposable
{
    private readonly RegisteredRam _ram;
    private FaultThread? _faultThread;

    /// <summary>
    /// SCHED_FIFO priority of the fault thread (<see cref="ThreadScheduling.PreferForLatency"/>); 0
    /// leaves it in the fair class. Set before <see cref="Start"/>.
    /// </summary>
    public int FaultThreadRealtimePriority { get; set; }

    public PageInstaller(ShimRegistration registration, PageBitmap zeroMap)
    {
        _ram = new RegisteredRam(registration, zeroMap);
    }

    /// <summary>
    /// Longest UFFDIO_COPY call: a copy holds <see cref="RegisteredRam.Gate"/>, and a demand
    /// install waiting behind a long push copy is fault latency; a longer call copies no faster
    /// (docs/tuning.md, "Install runs").
    /// </summary>
    private const int MaxRunBytes = 256 * 1024;

    public long PageCount => _ram.PageCount;
    public PageBitmap Done => _ram.Done;
    public FaultHistogram Stalls => _ram.Counts.Stalls;
    public long Faults => Volatile.Read(ref _ram.Counts.Faults);
    public long InstalledPages => Volatile.Read(ref _ram.Counts.Installed);
    public long ZeroResolvedPages => Volatile.Read(ref _ram.Counts.ZeroResolved);
    /// <summary>
    /// Pages done because they are zero at the source (its holes, or all-zero pages it announced),
    /// faulted or not. With <see cref="InstalledBy"/>, <see cref="RemovedPages"/> and
    /// <see cref="PresentPages"/>: every page is counted once, by the route that first made it
    /// done, so once complete they add up to <see cref="PageCount"/>.
    /// </summary>
    public long ZeroPages => Volatile.Read(ref _ram.Counts.ZeroPages);
    /// <summary>Pages found already in the RAM file when a restarted agent took the uffd over.</summary>
    public long PresentPages => Volatile.Read(ref _ram.Counts.PresentPages);
    public long RemovedPages => Volatile.Read(ref _ram.Counts.RemovedPages);
    /// <summary>Pages that arrived but were already done (a push behind a demand, a re-send after a reconnect): each is a second crossing.</summary>
    public long DuplicatePages => Volatile.Read(ref _ram.Counts.Duplicates);
    public long InstalledBy(PageOrigin origin) => Volatile.Read(ref _ram.Counts.ByOrigin[(int)origin]);
    public Task<InstallOutcome> Completion => _ram.Completion.Task;

    /// <summary>
    /// After an agent restart: pages already in the destination RAM file (SEEK_DATA) were
    /// installed by the previous agent. Only valid for a RAM file that started empty.
    /// Returns the number of pages marked, or -1 if the file cannot be opened here.
    /// </summary>
    public long MarkPresentFromRamFile()
    {
        var reg = _ram.Registration;
        int pageSize = _ram.PageSize;
        SafeFileHandle file;
        try { file = File.OpenHandle(reg.RamPath, FileMode.Open, FileAccess.Read); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return -1; }
        using (file)
        {
            long marked = 0, start = (long)reg.Hello.FileOffset, end = start + (long)reg.Length, off = start;
            while (off < end)
            {
                long data = FileExtents.NextData(file, off);
                if (data < 0 || data >= end) break;
                long hole = Math.Min(FileExtents.NextHole(file, data), end);
                // Only whole pages: UFFDIO_COPY installs a page atomically, so a data extent is page-aligned.
                for (long p = (data - start) / pageSize; p < (hole - start) / pageSize; p++)
                    if (_ram.MarkDone(p, ref _ram.Counts.PresentPages)) marked++;
                off = hole;
            }
            return marked;
        }
    }

    /// <summary>Starts the fault thread. Faults raised before this wait in the uffd queue.</summary>
    public void Start(IDemandSink sink)
    {
        var faults = new FaultThread(_ram, sink, FaultThreadRealtimePriority);
        // Faults whose events a previous agent read but never answered are parked in the kernel
        // (the event is consumed); UFFDIO_WAKE makes those threads retry and fault again, so we see them.
        _ram.Uffd.Wake(_ram.Base, _ram.Registration.Length);
        _faultThread = faults;
        faults.Start();
        _ram.CheckComplete();
    }

    /// <summary>Pages with a fault waiting for the source (to re-request after a reconnect).</summary>
    public int CopyPending(Span<long> into)
    {
        lock (_ram.PendingLock)
        {
            int n = 0;
            foreach (var kv in _ram.Pending)
            {
                if (n == into.Length) break;
                into[n++] = kv.Key;
            }
            return n;
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
        int pageSize = _ram.PageSize;
        int installed = 0, i = 0;
        while (i < count && !_ram.Stopped)
        {
            if (_ram.Done.IsSet(firstPage + i)) { Interlocked.Increment(ref _ram.Counts.Duplicates); i++; continue; }
            // Runs of at most MaxRunBytes: a copy holds the gate, and a demand install waiting
            // behind a long push copy is fault latency.
            int run = 1, maxRun = Math.Max(1, MaxRunBytes / pageSize);
            while (i + run < count && run < maxRun && !_ram.Done.IsSet(firstPage + i + run)) run++;
            long page = firstPage + i;
            int err;
            long copied;
            lock (_ram.Gate)
            {
                // Completion closes the uffd under the gate: never copy into a closed (or reused) fd.
                if (_ram.Stopped) return installed;
                // Re-check under the gate: a REMOVE marked since must win (see RegisteredRam.Gate).
                while (run > 0 && _ram.Removed.IsSet(page + run - 1)) run--;
                if (run == 0 || _ram.Removed.IsSet(page)) { i++; continue; }
                err = _ram.Uffd.Copy(_ram.Base + (ulong)(page * pageSize), data + (long)i * pageSize,
                    (ulong)((long)run * pageSize), wake: true, out copied);
            }
            int got = (int)(copied / pageSize);
            if (got > 0) installed += MarkInstalled(page, got, origin);
            if (err == 0) { i += run; continue; }
            if (err == Errno.EEXIST)
            {
                // Page `page + got` is already present (re-send after resume, or a zero page the
                // fault loop resolved). COPY woke nobody for it: wake explicitly.
                if (!_ram.MarkDone(page + got, ref _ram.Counts.ByOrigin[(int)origin])) Interlocked.Increment(ref _ram.Counts.Duplicates);
                _ram.CompletePending(page + got);
                _ram.Wake(page + got);
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
                _ram.Completion.TrySetResult(InstallOutcome.ProcessExited); // the process is gone
                return installed;
            }
            else throw new IOException($"UFFDIO_COPY pages [{page}, +{run}): errno {err}");
        }
        _ram.CheckComplete();
        return installed;
    }

    /// <summary>
    /// The source found pages [first, first+count) all zero (the up-front zero map only has the
    /// file's holes). Nothing is installed unless a fault waits on one of them: the fresh RAM
    /// file reads zeros there once the uffd is released. Thread-safe.
    /// </summary>
    public void MarkZero(long first, int count)
    {
        if (_ram.Stopped) return;
        if (first < 0 || count < 0 || first + count > PageCount)
            throw new InvalidDataException($"zero pages [{first}, +{count}) outside the mapping of {PageCount}");
        for (long p = first; p < first + count; p++)
        {
            // Zero bit before done bit before the pending check: the fault loop checks zero, then
            // registers pending, then re-checks done (and wakes, so the thread faults again and
            // meets the zero bit). Either side resolves it; ZEROPAGE twice is EEXIST + wake.
            _ram.Zero.TrySet(p);
            bool waiting;
            lock (_ram.PendingLock) waiting = _ram.Pending.ContainsKey(p);
            if (waiting && !_ram.Removed.IsSet(p))
            {
                _ram.ResolveZero(p);
                _ram.CompletePending(p);
            }
            _ram.MarkDone(p, ref _ram.Counts.ZeroPages);
        }
        _ram.CheckComplete();
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
            if ((bits[(int)(p >> 3)] & (1 << (int)(p & 7))) == 0 || _ram.Done.IsSet(p)) { p++; continue; }
            long first = p;
            while (p < pages && p - first < int.MaxValue && (bits[(int)(p >> 3)] & (1 << (int)(p & 7))) != 0 && !_ram.Done.IsSet(p)) p++;
            MarkZero(first, (int)(p - first));
        }
    }

    private int MarkInstalled(long first, int count, PageOrigin origin)
    {
        int n = 0;
        for (long p = first; p < first + count; p++)
        {
            if (_ram.MarkDone(p, ref _ram.Counts.ByOrigin[(int)origin])) n++;
            else Interlocked.Increment(ref _ram.Counts.Duplicates);
            _ram.CompletePending(p);
        }
        Interlocked.Add(ref _ram.Counts.Installed, count);
        return n;
    }

    public void Stop()
    {
        _ram.Stop();
        _faultThread?.Join();
        _ram.Completion.TrySetResult(InstallOutcome.Stopped);
    }

    public void Dispose() => Stop();
}
