using System.Runtime.InteropServices;
using static Interop.Sys;

namespace GuideCopy.Interop;

/// <summary>recvmsg with SCM_RIGHTS, and plain send, on a connected UNIX socket fd.</summary>
public static unsafe class FdPassing
{
    /// <summary>
    /// Receives one message (SOCK_SEQPACKET keeps boundaries). Returns its length, 0 at EOF,
    /// -1 if nothing is pending (EAGAIN) with <paramref name="dontWait"/>. A passed fd (first
    /// one only; extra ones are closed) comes out in <paramref name="fd"/>, else -1.
    /// </summary>
    public static int Receive(int socket, Span<byte> buffer, out int fd, bool dontWait = false)
    {
        fd = -1;
        const int controlSize = 64;
        byte* control = stackalloc byte[controlSize];
        fixed (byte* b = buffer)
        {
            var iov = new IoVec { Base = b, Len = (nuint)buffer.Length };
            var msg = new MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = controlSize };
            nint n = RecvMsg(socket, &msg, MSG_CMSG_CLOEXEC | (dontWait ? MSG_DONTWAIT : 0));
            if (n < 0)
            {
                int e = Marshal.GetLastPInvokeError();
                if (dontWait && e == Errno.EAGAIN) return -1;
                throw new IOException($"recvmsg: {Marshal.GetPInvokeErrorMessage(e)}");
            }
            // Walk the control messages (CMSG_FIRSTHDR/NXTHDR by hand: 8-byte aligned records).
            nuint off = 0;
            while (off + (nuint)sizeof(CmsgHdr) <= msg.ControlLen)
            {
                var c = (CmsgHdr*)(control + off);
                if (c->Len < (nuint)sizeof(CmsgHdr) || off + c->Len > msg.ControlLen) break;
                if (c->Level == SOL_SOCKET && c->Type == SCM_RIGHTS)
                {
                    int count = (int)((c->Len - (nuint)sizeof(CmsgHdr)) / sizeof(int));
                    int* fds = (int*)(c + 1);
                    for (int i = 0; i < count; i++)
                    {
                        if (fd < 0) fd = fds[i];
                        else Mono.Unix.Native.Syscall.close(fds[i]);
                    }
                }
                off += (c->Len + 7) & ~(nuint)7;
            }
            if ((msg.Flags & (MSG_TRUNC | MSG_CTRUNC)) != 0)
            {
                if (fd >= 0) Mono.Unix.Native.Syscall.close(fd);
                fd = -1;
                throw new InvalidDataException("shim message truncated (too long or too many fds)");
            }
            return (int)n;
        }
    }

    /// <summary>Sends one message; false if the peer is gone (EPIPE/ECONNRESET).</summary>
    public static bool Send(int socket, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
            return Mono.Unix.Native.Syscall.send(socket, p, (ulong)data.Length, Mono.Unix.Native.MessageFlags.MSG_NOSIGNAL) == data.Length;
    }

    public static void CloseFd(int fd) => Mono.Unix.Native.Syscall.close(fd);
}
