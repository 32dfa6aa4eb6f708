using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>
/// The demand lane: answers each page the destination faulted on at once, uncapped, even if
/// the push lane sent it already, and tells the push order about the fault. Also the lane the
/// zero map and the device state go on.
/// </summary>
internal sealed class DemandService(ServedRam served, DeviceStateRelay deviceState, HoleAnnouncer holes)
{
    private long _demand;

    /// <summary>Pages sent because the destination asked for them.</summary>
    public long Pages => Interlocked.Read(ref _demand);

    /// <inheritdoc cref="PageServer.DemandObserved"/>
    public Func<long, bool, long>? DemandObserved { get; set; }

    public void Serve(FrameConnection lane)
    {
        // The zero map as soon as it is known (at once on a frozen file; after the freeze on an
        // armed one, sent by HoleAnnouncer): the destination resolves those faults itself.
        bool zeroMapReady = deviceState.Attach(lane, holes);
        if (zeroMapReady) lane.Send(FrameType.ZeroMap, FrameCodec.EncodeBitmap(served.Ram.ZeroPages));
        // Armed: the destination has nothing to ask before it runs, and nothing is served before the freeze.
        while (!served.Frozen.Wait(100)) if (served.Stopped || lane.IsDisposed) return;

        var buffers = served.Runs.NewBuffers(1);
        while (!served.Stopped)
        {
            var type = lane.ReadFrame();
            if (type == FrameType.Heartbeat) continue;
            if (type != FrameType.Demand) throw new ProtocolException($"unexpected {type} on the demand lane");
            int count = FrameCodec.ReadDemandCount(lane.Payload);
            for (int i = 0; i < count; i++)
            {
                long page = FrameCodec.DemandPage(lane.Payload, i, served.PageCount);
                // Answer even if already sent (it may be in flight on the push lane): a fault waits for it.
                bool alreadySent = served.Sent.IsSet(page);
                int sent = served.Runs.Send(lane, buffers, page, 1, PageOrigin.Demand);
                served.Pacer.Charge((long)sent * served.Ram.PageSize);
                long predictedAt = DemandObserved?.Invoke(page, alreadySent) ?? -1;
                served.Sent.TrySet(page);
                Interlocked.Add(ref _demand, sent);
                if (served.Options.PushEnabled)
                {
                    served.Order.NoteDemand(page, predictedAt);
                    served.PushWork.Release();
                }
            }
        }
    }
}
