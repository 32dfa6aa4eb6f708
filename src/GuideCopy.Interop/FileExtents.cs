using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using static Interop.Sys;

namespace GuideCopy.Interop;

/// <summary>SEEK_DATA / SEEK_HOLE: find a sparse file's holes without reading (or allocating) them.</summary>
public static class FileExtents
{
    /// <summary>Offset of the next data at or after <paramref name="offset"/>, or -1 if only a hole follows (ENXIO).</summary>
    public static long NextData(SafeFileHandle file, long offset) => Seek(file, offset, SeekWhence.SEEK_DATA);

    /// <summary>Offset of the next hole at or after <paramref name="offset"/> (the file end counts as a hole).</summary>
    public static long NextHole(SafeFileHandle file, long offset) => Seek(file, offset, SeekWhence.SEEK_HOLE);

    private static long Seek(SafeFileHandle file, long offset, SeekWhence whence)
    {
        long r = LSeek((int)file.DangerousGetHandle(), offset, whence);
        if (r >= 0) return r;
        int e = Marshal.GetLastPInvokeError();
        if (e == Errno.ENXIO) return -1;
        throw new IOException($"lseek({whence}): {Marshal.GetPInvokeErrorMessage(e)}");
    }
}
