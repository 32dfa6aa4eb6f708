using System.Diagnostics;

namespace GuideCopy.MemoryPlane;

/// <summary>
/// Fault-stall histogram: log-linear buckets (8 per power of two) of microseconds, from 1 us
/// to ~1 hour. Record is lock-free and allocation-free.
/// </summary>
public sealed class FaultHistogram
{
    private const int SubBuckets = 8;
    private const int Buckets = 32 * SubBuckets;
    private readonly long[] _counts = new long[Buckets];
    private long _total;
    private long _totalMicros;
    private long _maxMicros;

    public long Count => Volatile.Read(ref _total);
    public TimeSpan Total => TimeSpan.FromMicroseconds(Volatile.Read(ref _totalMicros));
    public TimeSpan Max => TimeSpan.FromMicroseconds(Volatile.Read(ref _maxMicros));

    public void RecordTicks(long stopwatchTicks) => RecordMicros(stopwatchTicks * 1_000_000 / Stopwatch.Frequency);

    public void RecordMicros(long micros)
    {
        if (micros < 1) micros = 1;
        Interlocked.Increment(ref _counts[BucketOf(micros)]);
        Interlocked.Increment(ref _total);
        Interlocked.Add(ref _totalMicros, micros);
        long max;
        while (micros > (max = Volatile.Read(ref _maxMicros)) &&
               Interlocked.CompareExchange(ref _maxMicros, micros, max) != max) { }
    }

    /// <summary>Upper bound of the bucket holding the q-quantile (0 &lt; q &lt;= 1).</summary>
    public TimeSpan Percentile(double q)
    {
        long total = Count;
        if (total == 0) return TimeSpan.Zero;
        long rank = (long)Math.Ceiling(q * total), seen = 0;
        for (int b = 0; b < Buckets; b++)
        {
            seen += Volatile.Read(ref _counts[b]);
            if (seen >= rank) return TimeSpan.FromMicroseconds(Math.Min(UpperOf(b), Volatile.Read(ref _maxMicros)));
        }
        return Max;
    }

    private static int BucketOf(long micros)
    {
        int exp = 63 - System.Numerics.BitOperations.LeadingZeroCount((ulong)micros); // floor(log2)
        int sub = exp >= 3 ? (int)((micros >> (exp - 3)) & 7) : (int)((micros << (3 - exp)) & 7);
        return Math.Min(exp * SubBuckets + sub, Buckets - 1);
    }

    private static long UpperOf(int bucket)
    {
        int exp = bucket / SubBuckets, sub = bucket % SubBuckets;
        return ((8L + sub + 1) << exp) / 8;
    }

    public override string ToString() =>
        $"n={Count} p50={Percentile(0.5).TotalMicroseconds:0}us p99={Percentile(0.99).TotalMicroseconds:0}us total={Total.TotalMilliseconds:0.0}ms";
}
