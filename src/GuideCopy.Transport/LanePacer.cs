using System.Collections.Concurrent;
using System.Diagnostics;

namespace GuideCopy.Transport;

/// <summary>
/// A push cap, a token bucket in time: each run waits until the bytes booked before it would have
/// gone out at the capped rate, less a short burst. Demand pages never pass here. One pacer per
/// push lane, or one shared by every push lane of a bandwidth group (<see cref="ForGroup"/>: the
/// migrations of one evacuation share the host's budget; an idle one leaves its share to the rest).
/// Booking is one compare-and-swap, so lanes of a group on their own threads never take more
/// than the rate between them.
/// </summary>
public sealed class LanePacer(long bytesPerSecond)
{
    /// <summary>
    /// Credit an idle pacer keeps (a twentieth of a second of its rate): a short stall of the sender
    /// (a GC, a reschedule) is made up at once, a long idle time does not become a burst that fills
    /// the bottleneck's queue in front of demand replies.
    /// </summary>
    private static readonly long BurstTicks = Stopwatch.Frequency / 20;

    /// <summary>The pacers of the groups this process serves, by group name and rate. A group is one evacuation: few, and small.</summary>
    private static readonly ConcurrentDictionary<(string Group, long Rate), LanePacer> Groups = new();

    private long _nextSendTicks; // bandwidth cap: when the next capped byte may go

    /// <summary>The pacer of a bandwidth group (shared by every lane that names it), or a lane's own when <paramref name="group"/> is empty.</summary>
    public static LanePacer ForGroup(string? group, long bytesPerSecond) =>
        string.IsNullOrEmpty(group) || bytesPerSecond <= 0
            ? new LanePacer(bytesPerSecond)
            : Groups.GetOrAdd((group, bytesPerSecond), k => new LanePacer(k.Rate));

    /// <summary>
    /// Most the pacer runs ahead of now from charges: a second of its rate. A fault storm whose
    /// demand pages alone exceed the budget then holds the push back until it ends, and at most a
    /// second after, instead of paying its whole excess back later.
    /// </summary>
    private static readonly long MaxDebtTicks = Stopwatch.Frequency;

    /// <summary>
    /// Books <paramref name="bytes"/> that went out without waiting (demand pages: never delayed by
    /// the budget), so the push lanes sharing this pacer leave them their room: the migrations'
    /// bytes together stay near the budget and a neighbour keeps the rest of the link. Measured
    /// before: four migrations' demand lanes after their switchovers took the whole 200 Mbit/s link
    /// from a neighbour's stream for 10 s while the pushes went on at the 100 Mbit/s budget.
    /// </summary>
    public void Charge(long bytes)
    {
        long rate = bytesPerSecond;
        if (rate <= 0) return;
        long cost = bytes * Stopwatch.Frequency / rate;
        while (true)
        {
            long now = Stopwatch.GetTimestamp();
            long booked = Volatile.Read(ref _nextSendTicks);
            long next = Math.Min(Math.Max(booked, now - BurstTicks) + cost, now + MaxDebtTicks);
            if (next <= booked || Interlocked.CompareExchange(ref _nextSendTicks, next, booked) == booked) return;
        }
    }

    /// <summary>Waits until <paramref name="bytes"/> more may go under the cap (none when the rate is 0).</summary>
    public void Throttle(long bytes)
    {
        long rate = bytesPerSecond;
        if (rate <= 0) return;
        long cost = bytes * Stopwatch.Frequency / rate;
        long now, next;
        while (true)
        {
            now = Stopwatch.GetTimestamp();
            long booked = Volatile.Read(ref _nextSendTicks);
            next = Math.Max(booked, now - BurstTicks);
            if (Interlocked.CompareExchange(ref _nextSendTicks, next + cost, booked) == booked) break;
        }
        long wait = next - now;
        if (wait > 0) Thread.Sleep(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency));
    }
}
