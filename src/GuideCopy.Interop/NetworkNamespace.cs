using Mono.Unix;
using Mono.Unix.Native;

namespace GuideCopy.Interop;

/// <summary>Network namespaces by path (/run/netns/NAME, as `ip netns add` makes them).</summary>
public static class NetworkNamespace
{
    /// <summary>
    /// Moves the calling thread into the namespace at <paramref name="path"/>: a thread of its own
    /// should call this (the kernel switches only the caller, setns(2)), and every socket it opens
    /// afterwards lives there, wherever it is later used from.
    /// </summary>
    public static void EnterOnThisThread(string path)
    {
        int fd = Syscall.open(path, OpenFlags.O_RDONLY | OpenFlags.O_CLOEXEC);
        if (fd < 0) throw new UnixIOException(Stdlib.GetLastError());
        try
        {
            if (global::Interop.Sys.SetNs(fd, global::Interop.Sys.CLONE_NEWNET) != 0)
                throw new UnixIOException(System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
        }
        finally
        {
            Syscall.close(fd);
        }
    }
}
