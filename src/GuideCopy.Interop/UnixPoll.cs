using static Interop.Sys;

namespace GuideCopy.Interop;

/// <summary>poll(2) over a few fds, without allocation.</summary>
public static unsafe class UnixPoll
{
    public const short In = (short)PollEvents.POLLIN;
    public const short Hup = (short)PollEvents.POLLHUP;
    public const short Err = (short)PollEvents.POLLERR;

    public struct Entry
    {
        public int Fd;
        public short Events;
        public short Returned;
        public Entry(int fd, short events) { Fd = fd; Events = events; Returned = 0; }
    }

    /// <summary>Returns the number of ready entries, 0 on timeout or EINTR.</summary>
    public static int Wait(Span<Entry> entries, int timeoutMs)
    {
        fixed (Entry* p = entries)
        {
            int r = Poll((PollFd*)p, (nuint)entries.Length, timeoutMs);
            return r < 0 ? 0 : r;
        }
    }
}
