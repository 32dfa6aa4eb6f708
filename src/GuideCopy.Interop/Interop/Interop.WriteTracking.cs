using System.Runtime.InteropServices;

internal static partial class Interop
{
    internal static partial class Sys
    {
        internal const long SYS_pidfd_open = 434;  // x86-64, Linux 5.3
        internal const long SYS_pidfd_getfd = 438; // x86-64, Linux 5.6

        [LibraryImport(Libraries.Libc, EntryPoint = "syscall", SetLastError = true)]
        internal static partial long Syscall(long number, long arg0, long arg1, long arg2);

        internal const ulong UFFDIO_REGISTER_MODE_WP = 1 << 1;
        internal const ulong UFFD_FEATURE_WP_ASYNC = 1 << 15;

        // _IOWR('f', 16, struct pm_scan_arg): 0xc0000000 | sizeof (96) << 16 | 'f' << 8 | 16 (linux/fs.h, 6.7).
        internal const ulong PAGEMAP_SCAN = 0xc0606610;
        internal const ulong PM_SCAN_WP_MATCHING = 1 << 0;
        internal const ulong PM_SCAN_CHECK_WPASYNC = 1 << 1;
        internal const ulong PAGE_IS_WRITTEN = 1 << 1;

        [StructLayout(LayoutKind.Sequential)]
        internal struct PageRegion { public ulong Start; public ulong End; public ulong Categories; } // 24

        [StructLayout(LayoutKind.Sequential)]
        internal struct PmScanArg
        {
            public ulong Size, Flags, Start, End, WalkEnd, Vec, VecLen, MaxPages;
            public ulong CategoryInverted, CategoryMask, CategoryAnyofMask, ReturnMask;
        } // 96
    }
}
