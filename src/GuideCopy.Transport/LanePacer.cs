using System.Diagnostics;

namespace GuideCopy.Transport;

/// <summary>
/// The push lane's bandwidth cap, a token bucket in time: each run waits until the bytes before
/// it would have gone out at the capped rate, less a short burst. Demand pages never pass here.
/// No lock: only the push lane's thread calls it, and a new push lane stops the old one first
/// (<see cref="OpenLanes.TakePushLane"/>).
/// </summary>
internal sealed class LanePacer(long bytesPerSecond)
{
    /// <summary>
    /// Credit an idle lane keeps (a twentieth of a second of its rate): a short stall of the sender
    /// (a GC, a reschedule) is made up at once, a long idle time does not become a burst that fills
    /// the bottleneck's queue in front of demand replies.
    /// </summary>
    private static readonly long BurstTicks = Stopwatch.Frequency / 20;

    private long _nextSendTicks; // bandwidth cap: when the next capped byte may go

    /// <summary>Waits until <paramref name="bytes"/> more may go under the cap (none when the rate is 0).</summary>
    public void Throttle(long bytes)
    {
        long rate = bytesPerSecond;
        if (rate <= 0) return;
        long now = Stopwatch.GetTimestamp();
        long next = Math.Max(_nextSendTicks, now - BurstTicks);
        long wait = next - now;
        if (wait > 0) Thread.Sleep(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency));
        _nextSendTicks = next + bytes * Stopwatch.Frequency / rate;
    }
}
