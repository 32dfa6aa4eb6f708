using System.Runtime.InteropServices;

internal static partial class Interop
{
    internal static partial class Sys
    {
        internal const int CLONE_NEWNET = 0x40000000;

        // setns(2) moves the calling thread only; sockets it creates afterwards belong to that namespace.
        [LibraryImport(Libraries.Libc, EntryPoint = "setns", SetLastError = true)]
        internal static partial int SetNs(int fd, int nstype);
    }
}
