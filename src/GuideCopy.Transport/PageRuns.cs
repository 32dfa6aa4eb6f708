using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>
/// Sends runs of the frozen RAM's pages as frames, for the demand and the push lane alike:
/// data pages as Pages frames, all-zero pages as ZeroPages notices. Each lane brings its own
/// pinned frame buffer, so nothing is allocated per page.
/// </summary>
internal sealed class PageRuns(FrozenRam ram)
{
    private long _zeroFound; // all-zero data pages announced instead of sent (diagnostics)

    /// <summary>
    /// Reads pages [first, first+count) and sends them: runs of data pages as Pages frames, runs
    /// of all-zero pages as 16-byte ZeroPages notices (found here, on the fly: the zero map sent
    /// up front has only the file's holes, so no scan delays the first fault).
    /// </summary>
    /// <returns>The number of data pages sent (zero pages are not counted as sent).</returns>
    public int Send(FrameConnection lane, byte[] frame, long first, int count, PageOrigin origin)
    {
        int dataPages = 0;
        const int room = Wire.HeaderSize + Wire.PagesHeaderSize;
        int pageSize = ram.PageSize;
        ram.Read(first, count, frame.AsSpan(room, count * pageSize));
        int i = 0;
        while (i < count)
        {
            bool zero = ZeroMap.IsZero(frame.AsSpan(room + i * pageSize, pageSize));
            int n = 1;
            while (i + n < count && ZeroMap.IsZero(frame.AsSpan(room + (i + n) * pageSize, pageSize)) == zero) n++;
            // The frame header goes right before the run's data: those bytes belong to pages
            // already sent (or skipped), since frames go out synchronously and in order.
            var f = frame.AsSpan(i * pageSize);
            WriteHeader(f, first + i, n, origin);
            if (zero)
            {
                for (int k = 0; k < n; k++) ram.ZeroPages.TrySet(first + i + k);
                lane.SendPrepared(f, FrameType.ZeroPages, Wire.PagesHeaderSize);
                Interlocked.Add(ref _zeroFound, n);
            }
            else
            {
                lane.SendPrepared(f, FrameType.Pages, Wire.PagesHeaderSize + n * pageSize);
                dataPages += n;
            }
            i += n;
        }
        return dataPages;
    }

    /// <summary>The Pages / ZeroPages header (first page, count, origin) after the frame header of <paramref name="frame"/>.</summary>
    public static void WriteHeader(Span<byte> frame, long first, int count, PageOrigin origin) =>
        FrameCodec.WritePagesHeader(frame[Wire.HeaderSize..], first, count, origin);
}
