using System.Runtime.InteropServices;

internal static partial class Interop
{
    internal static partial class Sys
    {
        [Flags]
        internal enum OpenFlags
        {
            O_RDONLY = 0,
            O_RDWR = 2,
            O_NONBLOCK = 0x800,
            O_CLOEXEC = 0x80000,
        }

        [LibraryImport(Libraries.Libc, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        internal static partial int Open(string path, OpenFlags flags);
    }
}
