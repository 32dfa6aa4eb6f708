namespace GuideCopy.Transport;

/// <summary>
/// The demand request path: the fault thread asks the source for the pages it waits on, on the
/// demand lane, in frames built on its own stack.
/// </summary>
internal sealed class DemandRequests(SourceLanes lanes)
{
    /// <summary>
    /// Pages per Demand frame this pager sends: a quarter of what the wire allows
    /// (<see cref="Wire.MaxDemandPerFrame"/>), so the frame (2 KiB) stays on the fault thread's
    /// stack and the source starts on the first pages of a burst before the last are asked for.
    /// </summary>
    private const int DemandPagesPerFrame = Wire.MaxDemandPerFrame / 4;

    /// <summary>Fault thread: ask the source for these pages on the demand lane.</summary>
    public void Send(ReadOnlySpan<long> pages)
    {
        var lane = lanes.DemandLane;
        if (lane is null || lane.IsDisposed) return; // re-asked after the reconnect
        Span<byte> frame = stackalloc byte[FrameCodec.DemandSize(Math.Min(pages.Length, DemandPagesPerFrame))];
        while (pages.Length > 0)
        {
            int n = Math.Min(pages.Length, DemandPagesPerFrame);
            int size = FrameCodec.WriteDemand(frame, pages[..n]);
            try { lane.Send(FrameType.Demand, frame[..size]); }
            catch (IOException) { lane.Dispose(); return; } // the demand thread reconnects and re-asks
            pages = pages[n..];
        }
    }
}
