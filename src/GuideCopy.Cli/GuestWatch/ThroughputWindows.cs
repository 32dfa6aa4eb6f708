using GuideCopy.Guest;
using GuideCopy.Migration.Report;

namespace GuideCopy.Cli.GuestWatch;

/// <summary>
/// Turns a guest's heartbeats into the report's throughput windows. Work per second is measured
/// in host time across the switchover (so downtime and fault stalls count as lost work, in every
/// mode alike) and in guest time where the guest ran undisturbed (before, after completion).
/// </summary>
internal static class ThroughputWindows
{
    public static readonly TimeSpan Before = TimeSpan.FromSeconds(10);
    public static readonly TimeSpan During = TimeSpan.FromSeconds(20);
    /// <summary>The lost-work window from the migration's start: long enough for every mode here to finish at 100 Mbit/s (512 MiB).</summary>
    public static readonly TimeSpan LostWork = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Keeps watching until the report's windows are covered: 20 s after the switchover and
    /// <paramref name="observe"/> more on plain memory after completion.
    /// </summary>
    /// <param name="lostWorkUntil">Also watch until then (the end of the lost-work window); null: no longer than the rest asks.</param>
    public static async Task ObserveAsync(DateTime switchoverAt, DateTime completedAt, TimeSpan? observe, DateTime? lostWorkUntil, CancellationToken ct)
    {
        if (observe is not { } extra || extra <= TimeSpan.Zero)
        {
            return;
        }

        var windowEnd = switchoverAt + During;
        var until = (windowEnd > completedAt ? windowEnd : completedAt) + extra;
        if (lostWorkUntil is { } lost && lost > until)
        {
            until = lost;
        }

        var left = until - DateTime.UtcNow;
        if (left > TimeSpan.Zero)
        {
            await Task.Delay(left, ct);
        }
    }

    /// <param name="history">Heartbeats in the console before the switchover (guest time is reliable there).</param>
    /// <param name="live">Heartbeats seen live from shortly before the switchover on, stamped with host time.</param>
    public static GuestThroughput? Compute(IReadOnlyList<Heartbeat> history, IReadOnlyList<Heartbeat> live,
        DateTime switchoverAt, DateTime? completedAt)
    {
        var all = history.Concat(live.Where(l => history.Count == 0 || l.Seq > history[^1].Seq)).ToList();
        if (all.Count == 0)
        {
            return null;
        }

        // Before: the last 10 s of guest time up to the switchover.
        var before = history.Count > 0 ? history : live.Where(b => b.SeenAt <= switchoverAt).ToList();
        double? beforeRate = null;
        if (before.Count >= 2)
        {
            var last = before[^1];
            var first = before.LastOrDefault(b => last.GuestMs - b.GuestMs >= Before.TotalMilliseconds) ?? before[0];
            beforeRate = GuestRate(first, last);
        }

        // During: from the last beat before the switchover to the last beat within 20 s of it, host time.
        var anchor = before.Count > 0 ? before[^1] : null;
        var afterSwitch = live.Where(b => b.SeenAt > switchoverAt).ToList();
        double? duringRate = null;
        if (anchor is not null)
        {
            var end = afterSwitch.LastOrDefault(b => b.SeenAt <= switchoverAt + During);
            var anchorSeen = live.FirstOrDefault(b => b.Seq == anchor.Seq)?.SeenAt;
            if (end is not null && anchorSeen is not null && end.SeenAt > anchorSeen)
            {
                duringRate = (end.Work - (double)anchor.Work) / (end.SeenAt - anchorSeen.Value).TotalSeconds;
            }
        }

        // After completion: guest time again, the guest runs on plain memory.
        double? afterRate = null;
        if (completedAt is not null)
        {
            var tail = live.Where(b => b.SeenAt > completedAt).ToList();
            if (tail.Count >= 2)
            {
                afterRate = GuestRate(tail[0], tail[^1]);
            }
        }

        var lastBeat = all[^1];
        bool ok = afterSwitch.All(b => b.IsOk) && lastBeat.IsOk;
        var (lost, window, pause) = LostWorkOf(live, beforeRate);
        return new GuestThroughput(
            lastBeat.Workload, Round(beforeRate), Round(duringRate), Round(afterRate),
            Ratio(duringRate, beforeRate), Ratio(afterRate, beforeRate), ok, afterSwitch.Count, lastBeat.Line,
            Round(lost), Round(window), Round(pause));
    }

    /// <summary>
    /// <see cref="GuestThroughput.LostWorkSeconds"/> and <see cref="GuestThroughput.LongestPauseSeconds"/>
    /// from the live beats (host time), over <see cref="LostWork"/> from the first one (the watch
    /// starts with the migration and waits for a beat), or what of it was watched.
    /// </summary>
    internal static (double? Lost, double? Window, double? LongestPause) LostWorkOf(IReadOnlyList<Heartbeat> live, double? beforeRate)
    {
        if (live.Count < 2)
        {
            return (null, null, null);
        }

        var first = live[0];
        var inWindow = live.Where(b => b.SeenAt - first.SeenAt <= LostWork).ToList();
        var last = inWindow[^1];
        double window = (last.SeenAt - first.SeenAt).TotalSeconds;
        double longest = 0;
        var progressed = first;
        foreach (var beat in inWindow.Skip(1).Where(b => b.Work > 0))
        {
            if (beat.Work > progressed.Work)
            {
                longest = Math.Max(longest, (beat.SeenAt - progressed.SeenAt).TotalSeconds);
                progressed = beat;
            }
        }

        // A guest that has not moved since the last progress is pausing still: that counts too.
        longest = Math.Max(longest, (last.SeenAt - progressed.SeenAt).TotalSeconds);
        double? lost = beforeRate is > 0 && window > 0 ? Math.Max(0, window - (last.Work - (double)first.Work) / beforeRate.Value) : null;
        return (lost, window, longest);
    }

    /// <summary>
    /// Work per second between consecutive heartbeats, in seconds from the switchover: the last
    /// <see cref="Before"/> of the console's history placed by guest time before the first live
    /// beat, then the live beats by host time (where downtime and stalls show).
    /// </summary>
    public static List<GuestWorkSample> Series(IReadOnlyList<Heartbeat> history, IReadOnlyList<Heartbeat> live, DateTime switchoverAt)
    {
        var series = new List<GuestWorkSample>(live.Count + 16);
        if (live.Count > 0)
        {
            var first = live[0];
            double firstT = (first.SeenAt - switchoverAt).TotalSeconds;
            var earlier = history.Where(b => b.Seq <= first.Seq && first.GuestMs - b.GuestMs <= Before.TotalMilliseconds).ToList();
            for (int i = 1; i < earlier.Count; i++)
            {
                double dt = (earlier[i].GuestMs - earlier[i - 1].GuestMs) / 1000.0;
                if (dt > 0 && earlier[i].Work >= earlier[i - 1].Work)
                {
                    series.Add(new GuestWorkSample(Math.Round(firstT - (first.GuestMs - earlier[i].GuestMs) / 1000.0, 3),
                        Math.Round((earlier[i].Work - (double)earlier[i - 1].Work) / dt, 1)));
                }
            }
        }

        for (int i = 1; i < live.Count; i++)
        {
            double dt = (live[i].SeenAt - live[i - 1].SeenAt).TotalSeconds;
            if (dt > 0 && live[i].Work >= live[i - 1].Work)
            {
                series.Add(new GuestWorkSample(Math.Round((live[i].SeenAt - switchoverAt).TotalSeconds, 3),
                    Math.Round((live[i].Work - (double)live[i - 1].Work) / dt, 1)));
            }
        }

        return series;
    }

    private static double? GuestRate(Heartbeat first, Heartbeat last) =>
        last.GuestMs > first.GuestMs ? (last.Work - (double)first.Work) * 1000.0 / (last.GuestMs - first.GuestMs) : null;

    private static double? Ratio(double? x, double? baseline) =>
        x is null || baseline is null or 0 ? null : Math.Round(x.Value / baseline.Value, 3);

    private static double? Round(double? x) => x is null ? null : Math.Round(x.Value, 1);
}
