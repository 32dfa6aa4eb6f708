using System.Runtime.InteropServices;

internal static partial class Interop
{
    internal static partial class Sys
    {
        // SEEK_DATA/SEEK_HOLE (Linux >= 3.1, tmpfs included) are not in Mono.Unix's SeekFlags.
        internal enum SeekWhence
        {
            SEEK_SET = 0,
            SEEK_DATA = 3,
            SEEK_HOLE = 4,
        }

        [LibraryImport(Libraries.Libc, EntryPoint = "lseek", SetLastError = true)]
        internal static partial long LSeek(int fd, long offset, SeekWhence whence);
    }
}
