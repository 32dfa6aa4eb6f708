using System.Diagnostics;
using GuideCopy.Interop;

namespace GuideCopy.MemoryPlane;

/// <summary>
/// The fault thread of a <see cref="PageInstaller"/>: a short loop over the uffd's events. It
/// marks REMOVEd ranges, resolves what it can locally (zero pages, removed ranges, pages already
/// here), hands the rest to the <see cref="IDemandSink"/>, and ends the run when every page is
/// done or the faulting process exits.
/// </summary>
internal sealed class FaultThread(RegisteredRam ram, IDemandSink sink, int realtimePriority)
{
    private Thread? _thread;

    public void Start()
    {
        _thread = new Thread(Run) { IsBackground = true, Name = "uffd-faults" };
        _thread.Start();
    }

    /// <summary>Waits a while for the loop to see the stop (not when called from the fault thread itself).</summary>
    public void Join()
    {
        if (_thread is { } t && t != Thread.CurrentThread) t.Join(2000);
    }

    private void Run()
    {
        // A fault read late is a vCPU stalled longer: this thread wakes ahead of the push install.
        ThreadScheduling.PreferForLatency(realtimePriority);
        Span<UffdMessage> events = stackalloc UffdMessage[64];
        Span<long> demand = stackalloc long[64];
        Span<UnixPoll.Entry> fds = stackalloc UnixPoll.Entry[2];
        Span<byte> probe = stackalloc byte[16];
        try
        {
            while (!ram.Stopped)
            {
                fds[0] = new UnixPoll.Entry(ram.Uffd.Fd, UnixPoll.In);
                // No HUP on a uffd when QEMU exits: the shim's socket reaching EOF says it.
                fds[1] = new UnixPoll.Entry(ram.Registration.ConnectionFd, UnixPoll.In);
                if (UnixPoll.Wait(fds, 200) == 0) continue;
                if (fds[1].Returned != 0 && ShimClosed(probe))
                {
                    // Every page may have landed just before the program exited.
                    if (ram.CheckComplete()) return;
                    ram.Completion.TrySetResult(InstallOutcome.ProcessExited);
                    return;
                }
                if ((fds[0].Returned & UnixPoll.In) == 0) continue;

                int n = ReadEvents(events);
                int d = ResolveFaults(events[..n], demand);
                if (d > 0) sink.RequestPages(demand[..d]);
                if (ram.CheckComplete()) return;
            }
            // Stopped: by the caller, or by CheckComplete on an installing thread, which sets the
            // stop flag before it releases the uffd and reports Completed. Seen from here first,
            // that completion must not be reported as a stop (the agent would fail a migration
            // whose every page is in): CheckComplete waits on the gate for that thread's verdict.
            if (!ram.CheckComplete()) ram.Completion.TrySetResult(InstallOutcome.Stopped);
        }
        catch (Exception e)
        {
            ram.Completion.TrySetException(e);
        }
    }

    /// <summary>Reads what the shim's socket has (a stray fd is closed); true at EOF: the faulting process is gone.</summary>
    private bool ShimClosed(Span<byte> probe)
    {
        int got = FdPassing.Receive(ram.Registration.ConnectionFd, probe, out int stray, dontWait: true);
        if (stray >= 0) FdPassing.CloseFd(stray);
        return got == 0;
    }

    /// <summary>Reads the queued events into <paramref name="events"/> and marks their REMOVEd ranges; returns how many.</summary>
    private int ReadEvents(Span<UffdMessage> events)
    {
        int n;
        lock (ram.Gate)
        {
            // Reading a REMOVE event clears the kernel's mmap_changing; marking the range
            // under the same lock keeps Install from copying into it in between.
            n = ram.Uffd.ReadEvents(events);
            for (int i = 0; i < n; i++)
                if (events[i].Event is UffdMessage.Remove or UffdMessage.Unmap)
                    MarkRemoved(events[i].RemoveStart, events[i].RemoveEnd);
        }
        return n;
    }

    private void MarkRemoved(ulong start, ulong end)
    {
        // UFFD_EVENT_REMOVE (madvise DONTNEED/REMOVE after QEMU punched the file, balloon):
        // the range must read as zeros from now on, never as the source's content.
        if (end <= ram.Base) return;
        long first = (long)((Math.Max(start, ram.Base) - ram.Base) / (ulong)ram.PageSize);
        long last = (long)((Math.Min(end, ram.Base + ram.Registration.Length) - ram.Base + (ulong)ram.PageSize - 1) / (ulong)ram.PageSize);
        for (long p = first; p < last && p < ram.PageCount; p++)
        {
            ram.Removed.TrySet(p);
            ram.MarkDone(p, ref ram.Counts.RemovedPages);
        }
    }

    /// <summary>
    /// The page faults among <paramref name="events"/>: each resolved here if it can be, else
    /// registered as pending and written to <paramref name="demand"/>. Returns the pages written.
    /// </summary>
    private int ResolveFaults(Span<UffdMessage> events, Span<long> demand)
    {
        int d = 0;
        long now = Stopwatch.GetTimestamp();
        for (int i = 0; i < events.Length; i++)
        {
            if (events[i].Event != UffdMessage.PageFault) continue;
            Interlocked.Increment(ref ram.Counts.Faults);
            long page = (long)((events[i].Address - ram.Base) / (ulong)ram.PageSize);
            if ((ulong)page >= (ulong)ram.PageCount) continue;
            if (ram.Removed.IsSet(page) || ram.Zero.IsSet(page))
                ram.ResolveZero(page);
            else if (ram.Done.IsSet(page))
                // Installed after the kernel queued this fault; the copy already woke the
                // waiter, a second wake is harmless and covers the EEXIST path.
                ram.Wake(page);
            else
            {
                lock (ram.PendingLock) ram.Pending.TryAdd(page, now);
                // Installed between the check and TryAdd? Then nothing will wake it: do it here.
                if (ram.Done.IsSet(page)) { lock (ram.PendingLock) ram.Pending.Remove(page); ram.Wake(page); }
                else demand[d++] = page;
            }
        }
        return d;
    }
}
