namespace GuideCopy.Interop;

/// <summary>The errno values the memory plane branches on (x86-64 Linux).</summary>
public static class Errno
{
    public const int ESRCH = 3;
    public const int EINTR = 4;
    public const int EAGAIN = 11;
    public const int ENOENT = 2;
    public const int EEXIST = 17;
    public const int EINVAL = 22;
    public const int ENXIO = 6;
}
