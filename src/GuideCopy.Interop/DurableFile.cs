using Mono.Unix.Native;

namespace GuideCopy.Interop;

/// <summary>
/// Replaces a small file so that after a crash (of the process or the host) it holds either
/// the old or the new content, never a torn mix: write a temporary file, fsync it, rename it
/// over the old one (rename(2) is atomic within a directory), then fsync the directory so the
/// rename itself is on disk (ext4 and xfs need the directory fsync; man 2 fsync, "NOTES").
/// </summary>
public static class DurableFile
{
    public static void Replace(string path, ReadOnlySpan<byte> content)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string temp = path + ".tmp";
        using (var f = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            f.Write(content);
            f.Flush(flushToDisk: true);
        }

        File.Move(temp, path, overwrite: true);
        SyncDirectory(dir);
    }

    /// <summary>fsync(2) of a directory: Mono.Unix opens it (FileStream cannot open a directory).</summary>
    public static void SyncDirectory(string dir)
    {
        int fd = Syscall.open(dir, OpenFlags.O_RDONLY | OpenFlags.O_DIRECTORY | OpenFlags.O_CLOEXEC);
        if (fd < 0)
        {
            throw new IOException($"open {dir}: {Stdlib.GetLastError()}");
        }

        try
        {
            if (Syscall.fsync(fd) < 0)
            {
                throw new IOException($"fsync {dir}: {Stdlib.GetLastError()}");
            }
        }
        finally
        {
            Syscall.close(fd);
        }
    }
}
