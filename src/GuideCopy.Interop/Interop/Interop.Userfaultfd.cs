using System.Runtime.InteropServices;

internal static partial class Interop
{
    internal static partial class Sys
    {
        internal const long SYS_userfaultfd = 323; // x86-64 syscall number

        // syscall(2) is variadic; glibc returns -1 and sets errno like any wrapper.
        [LibraryImport(Libraries.Libc, EntryPoint = "syscall", SetLastError = true)]
        internal static partial long Syscall(long number, int arg0);

        // Request numbers as computed by _IOWR/_IOR/_IO in <linux/userfaultfd.h> (checked on 6.18).
        internal const ulong USERFAULTFD_IOC_NEW = 0xaa00;
        internal const ulong UFFDIO_API = 0xc018aa3f;
        internal const ulong UFFDIO_REGISTER = 0xc020aa00;
        internal const ulong UFFDIO_UNREGISTER = 0x8010aa01;
        internal const ulong UFFDIO_WAKE = 0x8010aa02;
        internal const ulong UFFDIO_COPY = 0xc028aa03;
        internal const ulong UFFDIO_ZEROPAGE = 0xc020aa04;
        internal const ulong UFFD_API = 0xaa;

        [Flags]
        internal enum UffdFeatures : ulong
        {
            UFFD_FEATURE_EVENT_REMOVE = 1 << 3,
            UFFD_FEATURE_MISSING_HUGETLBFS = 1 << 4,
            UFFD_FEATURE_MISSING_SHMEM = 1 << 5,
        }

        [Flags]
        internal enum UffdioRegisterMode : ulong
        {
            UFFDIO_REGISTER_MODE_MISSING = 1 << 0,
        }

        [Flags]
        internal enum UffdioCopyMode : ulong
        {
            None = 0,
            UFFDIO_COPY_MODE_DONTWAKE = 1 << 0,
        }

        internal const byte UFFD_EVENT_PAGEFAULT = 0x12;
        internal const byte UFFD_EVENT_FORK = 0x13;
        internal const byte UFFD_EVENT_REMAP = 0x14;
        internal const byte UFFD_EVENT_REMOVE = 0x15;
        internal const byte UFFD_EVENT_UNMAP = 0x16;

        [StructLayout(LayoutKind.Sequential)]
        internal struct UffdioApi { public ulong Api; public ulong Features; public ulong Ioctls; } // 24

        [StructLayout(LayoutKind.Sequential)]
        internal struct UffdioRange { public ulong Start; public ulong Len; } // 16

        [StructLayout(LayoutKind.Sequential)]
        internal struct UffdioRegister { public UffdioRange Range; public ulong Mode; public ulong Ioctls; } // 32

        // copy is written back by the kernel: bytes copied, or -errno.
        [StructLayout(LayoutKind.Sequential)]
        internal struct UffdioCopy { public ulong Dst; public ulong Src; public ulong Len; public ulong Mode; public long Copy; } // 40

        [StructLayout(LayoutKind.Sequential)]
        internal struct UffdioZeropage { public UffdioRange Range; public ulong Mode; public long Zeropage; } // 32

        // struct uffd_msg (32 bytes): event, then a union; offsets for the members we read.
        [StructLayout(LayoutKind.Explicit, Size = 32)]
        internal struct UffdMsg
        {
            [FieldOffset(0)] public byte Event;
            [FieldOffset(8)] public ulong PagefaultFlags;   // arg.pagefault.flags
            [FieldOffset(16)] public ulong PagefaultAddress; // arg.pagefault.address
            [FieldOffset(8)] public ulong RemoveStart;      // arg.remove.start
            [FieldOffset(16)] public ulong RemoveEnd;       // arg.remove.end
        }
    }
}
