using System.Runtime.InteropServices;

internal static partial class Interop
{
    internal static partial class Sys
    {
        [Flags]
        internal enum PollEvents : short
        {
            POLLIN = 0x001,
            POLLOUT = 0x004,
            POLLERR = 0x008,
            POLLHUP = 0x010,
            POLLNVAL = 0x020,
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct PollFd { public int Fd; public PollEvents Events; public PollEvents REvents; }

        [LibraryImport(Libraries.Libc, EntryPoint = "poll", SetLastError = true)]
        internal static unsafe partial int Poll(PollFd* fds, nuint nfds, int timeoutMs);
    }
}
