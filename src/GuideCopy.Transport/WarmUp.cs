using System.Diagnostics;
using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>How long a warm-up may run and how it judges that it stopped paying.</summary>
public sealed record WarmUpLimits
{
    /// <summary>Longest warm-up; the pause follows whatever is left.</summary>
    public TimeSpan MaxDuration { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>Between two scans of the guest's writes.</summary>
    public TimeSpan Round { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>A page written within this many last rounds is "hot" and waits (the guest is likely to write it again).</summary>
    public int HotRounds { get; init; } = 4;

    /// <summary>
    /// A round in which the guest spoiled (wrote after they were sent) at least this share of the
    /// pages sent in it gained nothing; two such rounds in a row end the warm-up. Near 1: before
    /// the pause the guest runs at full speed, so a page sent twice costs it nothing but link
    /// time; only a warm-up that no longer gains ground is stopped.
    /// </summary>
    public double StaleShareThatStops { get; init; } = 0.9;

    /// <summary>Most time to wait for the bytes queued on the lane to reach the destination before the pause.</summary>
    public TimeSpan Drain { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>What a warm-up did: the report's <c>warmUp</c>.</summary>
public sealed record WarmUpOutcome
{
    public long PagesSent { get; init; }
    public long ZeroPagesSent { get; init; }
    public long BytesSent { get; init; }
    /// <summary>Warm pages the guest wrote after they were sent, before the pause (the final scan adds its own in <see cref="PageServer.SendWarmVerdict"/>).</summary>
    public long StalePages { get; init; }
    public int Rounds { get; init; }
    public double DurationMs { get; init; }
    public double DrainMs { get; init; }
    public string StopReason { get; init; } = "";
}

/// <summary>
/// The warm-up (issue 16, item 2): while the source VM still runs, the pages it does not write
/// go to the destination on the demand lane (idle then: nothing is asked before the pause), as
/// Warm frames the destination holds apart. A <see cref="RamWriteTracker"/> scan each round
/// says which pages the guest wrote: one written after it was sent is stale (sent again after
/// the pause: its second and last crossing), one written within the last round is hot and not
/// sent yet. A page is sent warm at most once.
/// </summary>
internal sealed class WarmUp(ServedRam served)
{
    /// <summary>Pages sent warm (at most once each).</summary>
    public PageBitmap? Sent { get; private set; }

    /// <summary>Warm pages written since they were sent: the verdict's bitmap.</summary>
    public PageBitmap? Stale { get; private set; }

    public WarmUpOutcome Run(RamWriteTracker tracker, WarmUpLimits limits, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var ram = served.Ram;
        long pageCount = served.PageCount;
        int pageSize = ram.PageSize, perFrame = Wire.PagesPerFrame(pageSize);
        var sent = Sent = new PageBitmap(pageCount);
        var stale = Stale = new PageBitmap(pageCount);
        var holes = new PageBitmap(pageCount);
        ram.MarkHolesInto(holes);
        var lane = served.DemandLane ?? throw new IOException("no demand lane to warm up on");
        var buffers = served.Runs.NewBuffers(perFrame);
        long startBytes = lane.BytesSent;

        // The first scan protects every page (each is reported: none was protected); the pages
        // written in the first round are the first hot set. A page is hot while it was written
        // in one of the last HotRounds rounds (one bitmap per round, the oldest reused).
        tracker.Scan(static (_, _) => { });
        Thread.Sleep(limits.Round);
        var recent = new PageBitmap[Math.Max(1, limits.HotRounds)];
        var latest = recent[0] = new PageBitmap(pageCount);
        long staleTotal = 0;
        void Mark(long first, long count)
        {
            for (long p = first; p < first + count && p < pageCount; p++)
            {
                latest.TrySet(p);
                if (sent.IsSet(p) && stale.TrySet(p)) staleTotal++;
            }
        }
        bool Hot(long p)
        {
            foreach (var r in recent) if (r is not null && r.IsSet(p)) return true;
            return false;
        }
        tracker.Scan(Mark);

        long pagesSent = 0, zeroSent = 0, sentThisRound = 0, staleBefore = 0;
        int scans = 1, badRounds = 0;
        long roundStart = Stopwatch.GetTimestamp();
        long roundTicks = (long)(limits.Round.TotalSeconds * Stopwatch.Frequency);
        string reason = "every page the guest did not write within a round was sent";
        long p0 = 0;
        while (p0 < pageCount)
        {
            if (ct.IsCancellationRequested) { reason = "cancelled"; break; }
            if (clock.Elapsed >= limits.MaxDuration) { reason = $"the limit of {limits.MaxDuration.TotalSeconds:0} s"; break; }
            if (served.Stopped || lane.IsDisposed) { reason = "the demand lane closed"; break; }
            if (Stopwatch.GetTimestamp() - roundStart >= roundTicks)
            {
                latest = recent[scans % recent.Length] = new PageBitmap(pageCount);
                tracker.Scan(Mark);
                scans++;
                long staleNow = staleTotal - staleBefore;
                staleBefore = staleTotal;
                // Pays while the guest spoils less of what goes out than it lets through.
                badRounds = sentThisRound > 0 && staleNow >= limits.StaleShareThatStops * sentThisRound ? badRounds + 1 : 0;
                sentThisRound = 0;
                roundStart = Stopwatch.GetTimestamp();
                if (badRounds >= 2) { reason = "the guest wrote what was sent as fast as it went"; break; }
            }
            if (holes.IsSet(p0) || sent.IsSet(p0) || Hot(p0)) { p0++; continue; }
            int run = 1;
            while (run < perFrame && p0 + run < pageCount && !holes.IsSet(p0 + run) && !sent.IsSet(p0 + run) && !Hot(p0 + run)) run++;
            served.Pacer.Throttle((long)run * pageSize);
            sent.SetRange(p0, run);
            int data;
            try
            {
                data = served.Runs.Send(lane, buffers, p0, run, PageOrigin.Warm, learnZero: false);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                reason = "the demand lane closed";
                break;
            }
            pagesSent += data;
            zeroSent += run - data;
            sentThisRound += run;
            p0 += run;
        }

        double drainMs = DrainLane(lane, limits.Drain);
        return new WarmUpOutcome
        {
            PagesSent = pagesSent,
            ZeroPagesSent = zeroSent,
            BytesSent = lane.BytesSent - startBytes,
            StalePages = staleTotal,
            Rounds = scans,
            DurationMs = Math.Round(clock.Elapsed.TotalMilliseconds, 1),
            DrainMs = Math.Round(drainMs, 1),
            StopReason = reason,
        };
    }

    /// <summary>
    /// The last scan, with the VM stopped: every warm page written since it was sent is stale,
    /// and so is every one that is a hole now: QEMU punches one when the guest gives memory back
    /// (a balloon, free page reporting: fallocate on the file), and that zaps the page without a
    /// write the tracker would see. Returns the pages this scan added.
    /// </summary>
    public long FinalScan(RamWriteTracker tracker)
    {
        var sent = Sent!;
        var stale = Stale!;
        long added = 0;
        tracker.Scan((first, count) =>
        {
            for (long p = first; p < first + count && p < stale.PageCount; p++)
                if (sent.IsSet(p) && stale.TrySet(p)) added++;
        });
        var holes = new PageBitmap(stale.PageCount);
        served.Ram.MarkHolesInto(holes);
        for (long p = holes.NextSet(0); p >= 0; p = holes.NextSet(p + 1))
            if (sent.IsSet(p) && stale.TrySet(p)) added++;
        return added;
    }

    /// <summary>
    /// Waits until the destination has acknowledged what the lane queued (up to 8 MiB of socket
    /// buffer: 0.7 s at 100 Mbit/s), so the device state does not queue behind warm pages in the
    /// pause. Returns the ms waited.
    /// </summary>
    private static double DrainLane(FrameConnection lane, TimeSpan limit)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < limit && lane.UnsentBytes > 0) Thread.Sleep(2);
        return sw.Elapsed.TotalMilliseconds;
    }
}
