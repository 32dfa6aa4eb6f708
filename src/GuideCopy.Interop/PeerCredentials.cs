using Mono.Unix;
using Mono.Unix.Native;

namespace GuideCopy.Interop;

/// <summary>
/// Who is at the other end of a connected UNIX socket, as the kernel recorded it: SO_PEERCRED
/// holds the peer's pid (thread-group id), effective uid and gid at the time it called
/// connect() (socket(7), unix(7)). The peer cannot choose them, unlike anything it sends.
/// </summary>
public readonly record struct PeerCredentials(int Pid, uint Uid, uint Gid)
{
    public static unsafe PeerCredentials Of(int socket)
    {
        Ucred cred;
        long length = sizeof(Ucred);
        if (Syscall.getsockopt(socket, UnixSocketProtocol.SOL_SOCKET, UnixSocketOptionName.SO_PEERCRED, &cred, ref length) != 0)
        {
            throw new IOException($"getsockopt(SO_PEERCRED): {UnixMarshal.GetErrorDescription(Stdlib.GetLastError())}");
        }

        return new PeerCredentials(cred.Pid, cred.Uid, cred.Gid);
    }

    public override string ToString() => $"pid {Pid} uid {Uid} gid {Gid}";

    // struct ucred (<sys/socket.h>, _GNU_SOURCE): pid_t, uid_t, gid_t.
    private struct Ucred
    {
        public int Pid;
        public uint Uid;
        public uint Gid;
    }
}
