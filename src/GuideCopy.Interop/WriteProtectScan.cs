using System.Runtime.InteropServices;
using static Interop.Sys;

namespace GuideCopy.Interop;

/// <summary>
/// The kernel calls behind tracking another process's writes (Linux 6.7+): take a userfaultfd
/// out of it (pidfd_getfd), register a range of its memory for write-protection through it
/// (UFFDIO_REGISTER acts on the mm the uffd was created in, not the caller's), and list and
/// re-protect the written pages with PAGEMAP_SCAN on its /proc/PID/pagemap.
/// </summary>
public static unsafe class WriteProtectScan
{
    /// <summary>UFFD_FEATURE_WP_ASYNC: the kernel resolves write faults itself and only records them.</summary>
    public const ulong FeatureWpAsync = UFFD_FEATURE_WP_ASYNC;

    /// <summary>A duplicate, in this process, of fd <paramref name="targetFd"/> of process <paramref name="pid"/> (needs ptrace rights over it: root).</summary>
    public static int TakeFd(int pid, int targetFd)
    {
        long pidfd = Syscall(SYS_pidfd_open, pid, 0, 0);
        if (pidfd < 0) throw Error("pidfd_open");
        try
        {
            long fd = Syscall(SYS_pidfd_getfd, pidfd, targetFd, 0);
            if (fd < 0) throw Error("pidfd_getfd");
            return (int)fd;
        }
        finally
        {
            Mono.Unix.Native.Syscall.close((int)pidfd);
        }
    }

    /// <summary>UFFDIO_REGISTER in write-protect mode on [start, start+length) of the uffd's own process.</summary>
    public static void RegisterWriteProtect(int uffd, ulong start, ulong length)
    {
        var reg = new UffdioRegister { Range = new UffdioRange { Start = start, Len = length }, Mode = UFFDIO_REGISTER_MODE_WP };
        if (Ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) throw Error("UFFDIO_REGISTER (write-protect)");
    }

    /// <summary>UFFDIO_UNREGISTER: the range's protection and markers go with it. Returns 0 or the errno.</summary>
    public static int Unregister(int uffd, ulong start, ulong length)
    {
        var range = new UffdioRange { Start = start, Len = length };
        return Ioctl(uffd, UFFDIO_UNREGISTER, &range) < 0 ? Marshal.GetLastPInvokeError() : 0;
    }

    /// <summary>
    /// One PAGEMAP_SCAN call over [start, end): written pages (not write-protected) into
    /// <paramref name="regions"/> as (start, end) address pairs, each protected again in the same
    /// walk. Returns the regions filled and where the walk stopped (the vector was full: call
    /// again from there; otherwise <paramref name="end"/>).
    /// </summary>
    public static int ScanWritten(int pagemapFd, ulong start, ulong end, Span<ulong> regions, out ulong walkEnd)
    {
        int capacity = regions.Length / 3;
        fixed (ulong* vec = regions)
        {
            var arg = new PmScanArg
            {
                Size = (ulong)sizeof(PmScanArg),
                Flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
                Start = start,
                End = end,
                Vec = (ulong)vec,
                VecLen = (ulong)capacity,
                CategoryMask = PAGE_IS_WRITTEN,
                ReturnMask = PAGE_IS_WRITTEN,
            };
            int n = Ioctl(pagemapFd, PAGEMAP_SCAN, &arg);
            if (n < 0) throw Error("PAGEMAP_SCAN");
            walkEnd = arg.WalkEnd;
            return n;
        }
    }

    private static IOException Error(string what)
    {
        int errno = Marshal.GetLastPInvokeError();
        return new IOException($"{what} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
    }
}

/// <summary>A socket's kernel queues.</summary>
public static unsafe class SocketQueues
{
    private const ulong SIOCOUTQ = 0x5411; // linux/sockios.h (= TIOCOUTQ): bytes not yet acknowledged by the peer

    /// <summary>Bytes written to the TCP socket <paramref name="fd"/> the peer has not acknowledged yet; -1 if unknown.</summary>
    public static int Unsent(nint fd)
    {
        int n = 0;
        return Ioctl((int)fd, SIOCOUTQ, &n) < 0 ? -1 : n;
    }
}
