using System.Runtime.InteropServices;

internal static partial class Interop
{
    internal static partial class Sys
    {
        // ioctl(2) is variadic in C; on x86-64 a fixed third pointer argument is passed the same way.
        [LibraryImport(Libraries.Libc, EntryPoint = "ioctl", SetLastError = true)]
        internal static unsafe partial int Ioctl(int fd, ulong request, void* arg);

        // Overload for requests whose argument is an integer (USERFAULTFD_IOC_NEW takes the fd flags).
        [LibraryImport(Libraries.Libc, EntryPoint = "ioctl", SetLastError = true)]
        internal static partial int Ioctl(int fd, ulong request, nint arg);
    }
}
