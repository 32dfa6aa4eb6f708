using System.Diagnostics;
using GuideCopy.Interop;

namespace GuideCopy.MemoryPlane;

/// <summary>
/// What the fault thread (<see cref="FaultThread"/>) and the install calls
/// (<see cref="PageInstaller"/>) of one registration share: the uffd and the gate around it,
/// which pages are done, zero or removed, the faults waiting for the source, the counters, and
/// how the run ended. The uffd calls both sides make (zero a page, wake a waiter, complete) live here.
/// </summary>
internal sealed unsafe class RegisteredRam
{
    private volatile bool _stop;

    public RegisteredRam(ShimRegistration registration, PageBitmap zeroMap)
    {
        Registration = registration;
        Uffd = registration.Uffd;
        Base = registration.Base;
        PageSize = registration.PageSize;
        PageCount = registration.PageCount;
        if (zeroMap.PageCount != PageCount)
            throw new InvalidDataException($"zero map covers {zeroMap.PageCount} pages, the mapping {PageCount}");
        Zero = zeroMap;
        Done = new PageBitmap(PageCount);
        Removed = new PageBitmap(PageCount);
        for (long p = 0; p < PageCount; p++)
            if (zeroMap.IsSet(p)) MarkDone(p, ref Counts.ZeroPages);
    }

    public ShimRegistration Registration { get; }
    public Userfaultfd Uffd { get; }
    public ulong Base { get; }
    public int PageSize { get; }
    public long PageCount { get; }

    /// <summary>Installed, zero-resolved or removed: nothing more to fetch.</summary>
    public PageBitmap Done { get; }

    /// <summary>The source's zero map.</summary>
    public PageBitmap Zero { get; }

    /// <summary>Ranges discarded after commit (UFFD_EVENT_REMOVE).</summary>
    public PageBitmap Removed { get; }

    /// <summary>
    /// Serializes "read uffd events + mark REMOVEd ranges" against "check removed + UFFDIO_COPY":
    /// otherwise a copy checked before a REMOVE was marked could install stale source content
    /// into a range that must now read as zeros.
    /// </summary>
    public object Gate { get; } = new();

    /// <summary>Guards <see cref="Pending"/>.</summary>
    public object PendingLock { get; } = new();

    /// <summary>Faults waiting for the source: page -> Stopwatch ticks of its first fault.</summary>
    public Dictionary<long, long> Pending { get; } = new(4096);

    public TaskCompletionSource<InstallOutcome> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public InstallCounters Counts { get; } = new();

    /// <summary>Set by the caller's stop, or under <see cref="Gate"/> once complete (the uffd is closed then).</summary>
    public bool Stopped => _stop;

    public void Stop() => _stop = true;

    public void ResolveZero(long page)
    {
        ulong addr = Base + (ulong)(page * PageSize);
        int err;
        lock (Gate)
        {
            if (_stop) return; // completed: the uffd is closed, its fd number may be reused
            if (Registration.CanZeroPage)
            {
                err = Uffd.ZeroPage(addr, (ulong)PageSize, out _);
            }
            else
            {
                // hugetlbfs has no UFFDIO_ZEROPAGE: copy from a zeroed buffer.
                var zeros = ZeroBuffer(PageSize);
                fixed (byte* z = zeros) err = Uffd.Copy(addr, z, (ulong)PageSize, wake: true, out _);
            }
        }
        if (err == 0) Interlocked.Increment(ref Counts.ZeroResolved);
        else if (err == Errno.EEXIST) Wake(page);  // already there: the kernel did not wake the waiter
        else if (err == Errno.ESRCH) Completion.TrySetResult(InstallOutcome.ProcessExited);
        else if (err == Errno.EAGAIN) Wake(page);  // an event is pending: the thread will re-fault
        else throw new IOException($"UFFDIO_ZEROPAGE page {page}: errno {err}");
        if (!Removed.IsSet(page)) MarkDone(page, ref Counts.ZeroPages);
    }

    /// <summary>Sets the page's done bit and, if this call set it, counts it for its route (one route per page).</summary>
    public bool MarkDone(long page, ref long route)
    {
        if (!Done.TrySet(page)) return false;
        Interlocked.Increment(ref route);
        return true;
    }

    private static byte[]? s_zeros;
    private static byte[] ZeroBuffer(int size) =>
        s_zeros is { } z && z.Length >= size ? z : (s_zeros = GC.AllocateArray<byte>(size, pinned: true));

    public void Wake(long page)
    {
        Interlocked.Increment(ref Counts.Wakes);
        lock (Gate)
        {
            if (!_stop) Uffd.Wake(Base + (ulong)(page * PageSize), (ulong)PageSize);
        }
    }

    public void CompletePending(long page)
    {
        long since;
        lock (PendingLock)
        {
            if (Pending.Count == 0 || !Pending.Remove(page, out since)) return;
        }
        Counts.Stalls.RecordTicks(Stopwatch.GetTimestamp() - since);
    }

    public bool CheckComplete()
    {
        if (!Done.IsFull) return false;
        if (Completion.Task.IsCompleted) return true;
        lock (Gate)
        {
            if (Completion.Task.IsCompleted) return true;
            _stop = true;
            // Every page is here: drop our uffd and have the shim drop its copy, so the
            // registration vanishes and QEMU runs on plain shared memory.
            Registration.Release();
            Uffd.Dispose();
            Completion.TrySetResult(InstallOutcome.Completed);
        }
        return true;
    }
}
