using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using static Interop.Sys;

namespace GuideCopy.Interop;

/// <summary>
/// A userfaultfd. Install calls return the errno instead of throwing: EEXIST, EAGAIN and ESRCH
/// are normal outcomes the pager handles (see the remarks on each method).
/// </summary>
public sealed unsafe class Userfaultfd : SafeHandleZeroOrMinusOneIsInvalid
{
    public const ulong FeatureEventRemove = (ulong)UffdFeatures.UFFD_FEATURE_EVENT_REMOVE;
    public const ulong FeatureMissingHugetlbfs = (ulong)UffdFeatures.UFFD_FEATURE_MISSING_HUGETLBFS;
    public const ulong FeatureMissingShmem = (ulong)UffdFeatures.UFFD_FEATURE_MISSING_SHMEM;
    /// <summary>Bit of uffdio_register.ioctls saying UFFDIO_ZEROPAGE is allowed (not on hugetlbfs).</summary>
    public const ulong IoctlZeropageBit = 1UL << 0x04;

    private Userfaultfd() : base(ownsHandle: true) { }

    /// <summary>Takes ownership of an fd (e.g. received with SCM_RIGHTS).</summary>
    public static Userfaultfd FromFd(int fd)
    {
        var h = new Userfaultfd();
        h.SetHandle(fd);
        return h;
    }

    /// <summary>Creates a non-blocking uffd: /dev/userfaultfd first, then the syscall.</summary>
    public static Userfaultfd Create()
    {
        // The uffd's own flags go to the kernel as they are (USERFAULTFD_IOC_NEW's argument, the
        // syscall's): x86-64 O_CLOEXEC | O_NONBLOCK, not Mono.Unix's portable OpenFlags.
        const int flags = 0x80000 | 0x800;
        int dev = Mono.Unix.Native.Syscall.open("/dev/userfaultfd", Mono.Unix.Native.OpenFlags.O_RDWR | Mono.Unix.Native.OpenFlags.O_CLOEXEC);
        if (dev >= 0)
        {
            int fd = Ioctl(dev, USERFAULTFD_IOC_NEW, flags);
            Mono.Unix.Native.Syscall.close(dev);
            if (fd >= 0) return FromFd(fd);
        }
        long r = Syscall(SYS_userfaultfd, flags);
        if (r < 0) throw new IOException($"userfaultfd: errno {Marshal.GetLastPInvokeError()}");
        return FromFd((int)r);
    }

    public int Fd => (int)handle;

    /// <summary>What readlink(2) of /proc/self/fd/N gives for a userfaultfd: the kernel makes
    /// every uffd (syscall or USERFAULTFD_IOC_NEW) an anonymous inode named "[userfaultfd]".</summary>
    public const string ProcLinkName = "anon_inode:[userfaultfd]";

    /// <summary>
    /// Whether <paramref name="fd"/> (an fd of this process, e.g. just received with SCM_RIGHTS)
    /// really is a userfaultfd, by the kernel's name for its inode: a peer may send any fd.
    /// </summary>
    public static bool IsUserfaultfd(int fd, out string what)
    {
        what = Mono.Unix.UnixPath.TryReadLink($"/proc/self/fd/{fd}") ?? "unreadable";
        return what == ProcLinkName;
    }

    /// <summary>UFFDIO_API (once per fd). Returns the features the kernel offers.</summary>
    public ulong EnableApi(ulong features)
    {
        var api = new UffdioApi { Api = UFFD_API, Features = features };
        if (Ioctl(Fd, UFFDIO_API, &api) < 0) throw Error("UFFDIO_API");
        return api.Features;
    }

    /// <summary>UFFDIO_REGISTER in MISSING mode. Returns the allowed ioctls bit mask.</summary>
    public ulong RegisterMissing(ulong start, ulong length)
    {
        var reg = new UffdioRegister
        {
            Range = new UffdioRange { Start = start, Len = length },
            Mode = (ulong)UffdioRegisterMode.UFFDIO_REGISTER_MODE_MISSING,
        };
        if (Ioctl(Fd, UFFDIO_REGISTER, &reg) < 0) throw Error("UFFDIO_REGISTER");
        return reg.Ioctls;
    }

    /// <summary>
    /// Runs <see cref="ReadEvents"/>'s code once without a uffd: the first read(2) through
    /// Mono.Unix builds its marshalling stub, and the span's pinning is compiled for
    /// <see cref="UffdMessage"/>; done on a destination's first fault, that is compile time in
    /// the pause (QEMU's device load faults before it resumes). read(-1) fails with EBADF and
    /// touches nothing.
    /// </summary>
    public static void PrepareReadPath()
    {
        Span<UffdMessage> none = stackalloc UffdMessage[1];
        fixed (UffdMessage* p = none)
        {
            _ = Mono.Unix.Native.Syscall.read(-1, p, 0);
        }
    }

    /// <summary>
    /// Non-blocking read of as many messages as fit. Returns 0 when none is pending (EAGAIN).
    /// </summary>
    public int ReadEvents(Span<UffdMessage> into)
    {
        fixed (UffdMessage* p = into)
        {
            long n = Mono.Unix.Native.Syscall.read(Fd, p, (ulong)(into.Length * sizeof(UffdMessage)));
            if (n >= 0) return (int)(n / sizeof(UffdMessage));
            int e = Marshal.GetLastPInvokeError();
            if (e == Errno.EAGAIN || e == Errno.EINTR) return 0;
            throw Error("read(uffd)", e);
        }
    }

    /// <summary>
    /// UFFDIO_COPY of <paramref name="length"/> bytes from <paramref name="source"/> to
    /// <paramref name="destination"/> in the registered process. Returns 0 or the errno;
    /// <paramref name="copied"/> is the number of bytes installed even on failure: a range copy
    /// whose page k>0 already exists fails with EAGAIN after k pages (a partial copy); EEXIST
    /// means the first page exists; ESRCH means the process is gone; EAGAIN with 0 bytes means
    /// a non-cooperative event (REMOVE) is pending and must be read first.
    /// </summary>
    public int Copy(ulong destination, void* source, ulong length, bool wake, out long copied)
    {
        var c = new UffdioCopy
        {
            Dst = destination,
            Src = (ulong)source,
            Len = length,
            Mode = (ulong)(wake ? UffdioCopyMode.None : UffdioCopyMode.UFFDIO_COPY_MODE_DONTWAKE),
        };
        int r = Ioctl(Fd, UFFDIO_COPY, &c);
        copied = c.Copy > 0 ? c.Copy : 0;
        return r < 0 ? Marshal.GetLastPInvokeError() : 0;
    }

    /// <summary>UFFDIO_ZEROPAGE; same error contract as <see cref="Copy"/>.</summary>
    public int ZeroPage(ulong destination, ulong length, out long zeroed)
    {
        var z = new UffdioZeropage { Range = new UffdioRange { Start = destination, Len = length } };
        int r = Ioctl(Fd, UFFDIO_ZEROPAGE, &z);
        zeroed = z.Zeropage > 0 ? z.Zeropage : 0;
        return r < 0 ? Marshal.GetLastPInvokeError() : 0;
    }

    /// <summary>UFFDIO_WAKE: wakes threads waiting on faults in the range (they retry the fault).</summary>
    public int Wake(ulong start, ulong length)
    {
        var range = new UffdioRange { Start = start, Len = length };
        return Ioctl(Fd, UFFDIO_WAKE, &range) < 0 ? Marshal.GetLastPInvokeError() : 0;
    }

    protected override bool ReleaseHandle() => Mono.Unix.Native.Syscall.close((int)handle) == 0;

    private static IOException Error(string what, int errno = -1)
    {
        if (errno < 0) errno = Marshal.GetLastPInvokeError();
        return new IOException($"{what} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
    }
}
