using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>
/// The push lane: streams every page nobody asked for yet in <see cref="PushOrder"/>, in runs,
/// skipping zero pages and pages already sent, under the <see cref="LanePacer"/>'s cap. A
/// reconnecting destination sends its installed bitmap first and the push resumes from it.
/// </summary>
internal sealed class PushService(ServedRam served, OpenLanes lanes, HoleAnnouncer holes)
{
    private long _push, _locality, _background, _resumes;

    public long PushPages => Interlocked.Read(ref _push);
    public long LocalityPages => Interlocked.Read(ref _locality);
    public long BackgroundPages => Interlocked.Read(ref _background);
    public long Resumes => Interlocked.Read(ref _resumes);

    /// <inheritdoc cref="PageServer.PushLaneUp"/>
    public Action? PushLaneUp { get; set; }

    public void Serve(FrameConnection lane)
    {
        if (!Resume(lane)) return;
        if (!served.Options.PushEnabled)
        {
            while (!served.Stopped && !lane.IsDisposed) Thread.Sleep(100);
            return;
        }
        Push(lane);
    }

    /// <summary>
    /// Takes over from the previous push lane and starts again from the destination's bitmap, once
    /// the RAM is frozen; false when the server stopped or the lane closed before that.
    /// </summary>
    private bool Resume(FrameConnection lane)
    {
        lane.Expect(FrameType.Resume);
        var bitmap = FrameCodec.ReadBitmap(lane.Payload, served.PageCount, "resume bitmap");
        // One push lane at a time: stop the old one before trusting the new bitmap, so no page
        // is marked sent by a lane whose bytes will never arrive.
        var (old, oldThread) = lanes.TakePushLane(lane);
        old?.Dispose();
        if (oldThread is not null && oldThread != Thread.CurrentThread) oldThread.Join(served.Options.LinkTimeoutMs * 2);
        // Armed: connected before the pause, the push starts once the RAM is frozen and the device state is out.
        while (!served.Frozen.Wait(100)) if (served.Stopped || lane.IsDisposed) return false;
        holes.StartHoleScanOnce();
        PushLaneUp?.Invoke();
        served.Sent.ResetTo(bitmap);
        served.Order.RestartBackground();
        Interlocked.Increment(ref _resumes);
        return true;
    }

    private void Push(FrameConnection lane)
    {
        int pageSize = served.Ram.PageSize, perFrame = Wire.PagesPerFrame(pageSize);
        var buffers = served.Runs.NewBuffers(perFrame);
        AnnounceZeroPagesAgain(lane, buffers.Frame);
        var order = served.Order;
        var sent = served.Sent;
        var zero = served.Ram.ZeroPages;
        long pageCount = served.PageCount;
        bool completeSent = false;
        while (!served.Stopped && !lane.IsDisposed)
        {
            if (!order.TryNext(out long page, out var origin))
            {
                if (!completeSent)
                {
                    lane.Send(FrameType.Complete, default);
                    completeSent = true;
                }
                served.PushWork.Wait(100);
                continue;
            }
            if (zero.IsSet(page) || !sent.TrySet(page)) continue;
            completeSent = false;
            int run = 1, maxRun = MaxRun(origin, perFrame, pageSize);
            // A guide-queue entry takes along only the queue entries that are also its next pages.
            while (run < maxRun && page + run < pageCount && !zero.IsSet(page + run)
                   && (origin != PageOrigin.Push || order.TryTakePushIf(page + run)) && sent.TrySet(page + run)) run++;
            if (origin == PageOrigin.Background) order.SkipBackground(page + run - 1);
            served.Pacer.Throttle((long)run * pageSize);
            int sentPages = served.Runs.Send(lane, buffers, page, run, origin);
            if (origin == PageOrigin.Push) Interlocked.Add(ref _push, sentPages);
            else if (origin == PageOrigin.Locality) Interlocked.Add(ref _locality, sentPages);
            else Interlocked.Add(ref _background, sentPages);
        }
    }

    /// <summary>
    /// After a resume: announces every page that is zero here but not present at the destination.
    /// A zero page found on the fly is marked in the zero map for good and only announced (16
    /// bytes); an announcement that went out on a lane that then died never arrived, and the push
    /// skips zero pages, so without this the destination would wait for it forever: each reconnect
    /// would report the push complete while the destination never completes.
    /// </summary>
    private void AnnounceZeroPagesAgain(FrameConnection lane, byte[] frame)
    {
        var zero = served.Ram.ZeroPages;
        var sent = served.Sent;
        long pageCount = served.PageCount;
        long p = 0;
        while (p < pageCount)
        {
            if (!zero.IsSet(p) || sent.IsSet(p))
            {
                p++;
                continue;
            }

            long first = p;
            while (p < pageCount && zero.IsSet(p) && sent.TrySet(p)) p++;
            PageRuns.WriteHeader(frame, first, (int)(p - first), PageOrigin.Background);
            lane.SendPrepared(frame, FrameType.ZeroPages, Wire.PagesHeaderSize);
        }
    }

    /// <summary>
    /// How many contiguous pages one pick may take along. A guide-queue entry takes only the
    /// queue entries right behind it that are also its next pages: its other neighbours are not
    /// what the guide touched next, and a long run behind each entry would bury the guide's order
    /// (docs/tuning.md, "Push runs are short while the guide leads").
    /// Locality takes its window; the background sweep long runs (fast installs) but, under a
    /// cap, no more than <see cref="BackgroundRunsPerSecond"/>-th of a second of the link, so a guide
    /// page queued meanwhile waits little.
    /// </summary>
    /// <summary>A capped background run is at most this fraction of a second of the link (1/100: 10 ms).</summary>
    private const long BackgroundRunsPerSecond = 100;
    /// <summary>Pages a background run may take even on a slow cap: below this, frame headers and wakeups dominate.</summary>
    private const int MinBackgroundRun = 16;

    private int MaxRun(PageOrigin origin, int perFrame, int pageSize) => origin switch
    {
        PageOrigin.Push => perFrame, // bounded by the queue: only entries that are the next pages join
        PageOrigin.Locality => Math.Min(perFrame, served.Order.LocalityWindow), // one fault's neighbours per frame
        _ => served.Options.BandwidthBytesPerSecond > 0
            ? (int)Math.Clamp(served.Options.BandwidthBytesPerSecond / BackgroundRunsPerSecond / pageSize, MinBackgroundRun, perFrame)
            : perFrame,
    };
}
