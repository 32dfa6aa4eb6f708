using System.Diagnostics;
using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>A lane's own pinned frame buffers: the pages as read, and the same run packed.</summary>
internal sealed class RunBuffers(int maxRunBytes)
{
    public byte[] Frame { get; } = GC.AllocateUninitializedArray<byte>(Wire.HeaderSize + Wire.PagesHeaderSize + maxRunBytes + FrameConnection.TrailerRoom, pinned: true);
    public byte[] Packed { get; } = GC.AllocateUninitializedArray<byte>(PagePacker.BufferSize(maxRunBytes), pinned: true);
}

/// <summary>
/// Sends runs of the frozen RAM's pages as frames, for the demand and the push lane alike:
/// data pages as Pages frames (PackedPages where the <see cref="PagePacker"/> packs them), all-zero
/// pages as ZeroPages notices. Each lane brings its own <see cref="RunBuffers"/>, so nothing is
/// allocated per page.
/// </summary>
internal sealed class PageRuns(FrozenRam ram, PagePacker packer)
{
    private long _zeroFound; // all-zero data pages announced instead of sent (diagnostics)

    public PagePacker Packer => packer;

    /// <summary>Buffers for a lane whose runs are at most <paramref name="pages"/> pages.</summary>
    public RunBuffers NewBuffers(int pages) => new(pages * ram.PageSize);

    /// <summary>
    /// Reads pages [first, first+count) and sends them: runs of data pages as Pages or PackedPages
    /// frames, runs of all-zero pages as 16-byte ZeroPages notices (found here, on the fly: the
    /// zero map sent up front has only the file's holes, so no scan delays the first fault).
    /// </summary>
    /// <param name="learnZero">
    /// Whether an all-zero page found is marked zero for good in the frozen RAM's map (the push
    /// then skips it). Not while the source still runs (the warm-up): it may write the page next.
    /// </param>
    /// <returns>The number of data pages sent (zero pages are not counted as sent).</returns>
    public int Send(FrameConnection lane, RunBuffers buffers, long first, int count, PageOrigin origin, bool learnZero = true)
    {
        int dataPages = 0;
        const int room = Wire.HeaderSize + Wire.PagesHeaderSize;
        int pageSize = ram.PageSize;
        byte[] frame = buffers.Frame;
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
            if (zero)
            {
                WriteHeader(f, first + i, n, origin);
                if (learnZero) for (int k = 0; k < n; k++) ram.ZeroPages.TrySet(first + i + k);
                lane.SendPrepared(f, FrameType.ZeroPages, Wire.PagesHeaderSize);
                Interlocked.Add(ref _zeroFound, n);
            }
            else
            {
                SendData(lane, buffers, f, first + i, n, origin);
                dataPages += n;
            }
            i += n;
        }
        return dataPages;
    }

    /// <summary>One run of data pages whose bytes stand at <paramref name="f"/>[room..]: packed if the packer says so.</summary>
    private void SendData(FrameConnection lane, RunBuffers buffers, Span<byte> f, long first, int n, PageOrigin origin)
    {
        const int room = Wire.HeaderSize + Wire.PagesHeaderSize;
        int bytes = n * ram.PageSize;
        var data = f.Slice(room, bytes);
        bool packed = packer.TryPack(data, buffers.Packed.AsSpan(room), out int packedLength, mayProbe: origin != PageOrigin.Demand);
        Span<byte> frame = packed ? buffers.Packed : f;
        var type = packed ? FrameType.PackedPages : FrameType.Pages;
        int length = packed ? packedLength : bytes;
        WriteHeader(frame, first, n, origin);
        long start = Stopwatch.GetTimestamp();
        lane.SendPrepared(frame, type, Wire.PagesHeaderSize + length);
        packer.NoteSend(length, Stopwatch.GetTimestamp() - start);
        packer.Sent(bytes, length, packed);
    }

    /// <summary>The Pages / ZeroPages header (first page, count, origin) after the frame header of <paramref name="frame"/>.</summary>
    public static void WriteHeader(Span<byte> frame, long first, int count, PageOrigin origin) =>
        FrameCodec.WritePagesHeader(frame[Wire.HeaderSize..], first, count, origin);
}
