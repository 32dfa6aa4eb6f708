using BenchmarkDotNet.Attributes;
using GuideCopy.MemoryPlane;

namespace GuideCopy.Benchmarks;

/// <summary>
/// What the page server does per page before it sends one: the zero test on the page it read
/// (<see cref="ZeroMap.IsZero"/>: a zero page costs a full scan, a page with data stops at its
/// first non-zero byte, here the worst case of the last byte) and the sent-bitmap look-ups of
/// <see cref="PageBitmap"/> the background sweep makes.
/// </summary>
[MemoryDiagnoser]
public class PageScanBenchmarks
{
    private const long PageCount = 1L << 17;
    private readonly byte[] _zeroPage = new byte[4096];
    private readonly byte[] _lastByteSet = new byte[4096];
    private readonly PageBitmap _sent = new(PageCount);
    private long _next;

    [GlobalSetup]
    public void Setup()
    {
        _lastByteSet[^1] = 1;
        // Every other run of 64 pages sent: the sweep's NextClear skips whole words.
        for (long p = 0; p < PageCount; p += 128) _sent.SetRange(p, 64);
    }

    [Benchmark]
    public bool IsZeroOnZeroPage() => ZeroMap.IsZero(_zeroPage);

    [Benchmark]
    public bool IsZeroOnLastByteSet() => ZeroMap.IsZero(_lastByteSet);

    [Benchmark]
    public long NextClear()
    {
        long p = _sent.NextClear(_next);
        _next = p < 0 || p + 1 >= PageCount ? 0 : p + 1;
        return p;
    }

    [Benchmark]
    public bool IsSet() => _sent.IsSet(_next++ & (PageCount - 1));
}
