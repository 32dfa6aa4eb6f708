using BenchmarkDotNet.Attributes;
using GuideCopy.Transport;

namespace GuideCopy.Benchmarks;

/// <summary>
/// The push order's per-page work (<see cref="PushOrder"/>): a guide log entry queued and
/// taken, and a demand fault noting its neighbours (the locality window) ahead of the queue.
/// Both run under the order's one lock, on the page server's push thread and its demand
/// thread: what they cost is how long the other thread may wait.
/// </summary>
[MemoryDiagnoser]
public class PushOrderBenchmarks
{
    private const long PageCount = 1L << 17;
    private readonly long[] _one = new long[1];
    private PushOrder _order = null!;
    private long _page;

    [GlobalSetup]
    public void Setup() => _order = new PushOrder(PageCount) { Lead = 0 };

    [Benchmark]
    public long EnqueueThenTake()
    {
        _one[0] = _page++ & (PageCount - 1);
        _order.EnqueuePush(_one);
        _order.TryNext(out long page, out _);
        return page;
    }

    [Benchmark]
    public long NoteDemand()
    {
        _order.NoteDemand(_page++ & (PageCount - 1));
        return _order.Overtaken;
    }
}
