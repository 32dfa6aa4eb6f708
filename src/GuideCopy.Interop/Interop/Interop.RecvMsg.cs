using System.Runtime.InteropServices;

internal static partial class Interop
{
    internal static partial class Sys
    {
        // Raw recvmsg: Mono.Unix's Msghdr is a class holding managed arrays, which would
        // allocate on every call and hides the cmsg buffer we parse for SCM_RIGHTS.
        internal const int SOL_SOCKET = 1;
        internal const int SCM_RIGHTS = 1;
        internal const int MSG_DONTWAIT = 0x40;
        internal const int MSG_NOSIGNAL = 0x4000;
        internal const int MSG_CMSG_CLOEXEC = 0x40000000;
        internal const int MSG_TRUNC = 0x20;
        internal const int MSG_CTRUNC = 0x08;

        [StructLayout(LayoutKind.Sequential)]
        internal unsafe struct IoVec { public void* Base; public nuint Len; }

        [StructLayout(LayoutKind.Sequential)]
        internal unsafe struct MsgHdr
        {
            public void* Name; public uint NameLen;
            public IoVec* Iov; public nuint IovLen;
            public void* Control; public nuint ControlLen;
            public int Flags;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct CmsgHdr { public nuint Len; public int Level; public int Type; } // 16; data follows

        [LibraryImport(Libraries.Libc, EntryPoint = "recvmsg", SetLastError = true)]
        internal static unsafe partial nint RecvMsg(int socket, MsgHdr* message, int flags);

    }
}
