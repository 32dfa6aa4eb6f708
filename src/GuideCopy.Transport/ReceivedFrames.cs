using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>
/// The receiving side of one lane: what each frame the source sends does here. Pages are
/// installed, zero runs and the zero map marked, the device state passed on; anything else on
/// that lane is the source breaking the protocol. Called on the lane's thread, frame by frame.
/// </summary>
internal sealed class ReceivedFrames(Lane kind, PageInstaller installer, DeviceStateStream deviceState, PushCompletion completion, WarmPages warm)
{
    /// <summary>Acts on the frame <paramref name="lane"/> just read; throws ProtocolException for one this lane must not carry.</summary>
    public void Take(FrameType type, FrameConnection lane)
    {
        if (type == FrameType.Pages) InstallFrame(lane);
        else if (type == FrameType.PackedPages) InstallPackedFrame(lane);
        else if (type == FrameType.ZeroPages) ZeroFrame(lane);
        else if (type == FrameType.Complete) completion.Heard();
        else if (type == FrameType.ZeroMap && kind == Lane.Demand)
            installer.MarkZeroMap(FrameCodec.ReadBitmap(lane.Payload, installer.PageCount, "zero map"));
        else if (type == FrameType.DeviceState && kind == Lane.Demand) deviceState.Piece(lane.Payload);
        else if (type == FrameType.DeviceStateEnd && kind == Lane.Demand) deviceState.End(lane.Payload);
        else if (type == FrameType.WarmVerdict && kind == Lane.Demand)
            warm.TakeVerdict(FrameCodec.ReadBitmap(lane.Payload, installer.PageCount, "warm verdict"), installer);
        else if (type != FrameType.Heartbeat) throw new ProtocolException($"unexpected {type} on the {kind} lane");
    }

    private unsafe void InstallFrame(FrameConnection lane)
    {
        var p = lane.Payload;
        var h = FrameCodec.ReadPages(p, lane.PageSize, installer.PageCount);
        fixed (byte* data = p) // the receive buffer is pinned: this costs nothing
            Take(h, data + Wire.PagesHeaderSize);
    }

    /// <summary>
    /// A packed run, decoded into this lane's own pinned buffer (made at the first such frame, the
    /// size of the largest run a frame may carry), then installed from there like a Pages frame.
    /// </summary>
    private unsafe void InstallPackedFrame(FrameConnection lane)
    {
        _unpacked ??= GC.AllocateUninitializedArray<byte>(Math.Max(Wire.MaxBatchBytes, lane.PageSize), pinned: true);
        var h = FrameCodec.ReadPackedPages(lane.Payload, lane.PageSize, installer.PageCount, _unpacked);
        fixed (byte* data = _unpacked)
            Take(h, data);
    }

    /// <summary>Pages from the source: installed, or, sent while it still ran, held until the warm verdict.</summary>
    private unsafe void Take(PagesHeader h, byte* data)
    {
        if (h.Origin != PageOrigin.Warm) installer.Install(h.First, h.Count, data, h.Origin);
        else if (kind == Lane.Demand) warm.Hold(h.First, h.Count, data);
        else throw new ProtocolException("warm pages on the push lane");
    }

    private byte[]? _unpacked;

    private void ZeroFrame(FrameConnection lane)
    {
        var h = FrameCodec.ReadZeroPages(lane.Payload, installer.PageCount);
        if (h.Origin != PageOrigin.Warm) installer.MarkZero(h.First, h.Count);
        else if (kind == Lane.Demand) warm.HoldZero(h.First, h.Count);
        else throw new ProtocolException("warm pages on the push lane");
    }
}
