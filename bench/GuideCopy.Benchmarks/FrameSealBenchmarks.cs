using BenchmarkDotNet.Attributes;
using GuideCopy.Transport;

namespace GuideCopy.Benchmarks;

/// <summary>
/// One frame sealed by one side and opened by the other, in place, as the lanes do
/// (<see cref="FrameSeal"/>): a control-sized frame, one 4 KiB page, and a 64-page push run.
/// The remote fault seals and opens four frames, so four times the small case is what
/// encryption adds to a fault's round trip (budget: 10% of its p50, docs/security.md).
/// </summary>
[MemoryDiagnoser]
public class FrameSealBenchmarks
{
    private FrameSeal _sender = null!, _receiver = null!;
    private byte[] _frame = null!;

    [Params(16, 4096 + 16, 64 * 4096 + 16)]
    public int PayloadBytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var a = new byte[FrameSeal.KeySize];
        var b = new byte[FrameSeal.KeySize];
        Random.Shared.NextBytes(a);
        Random.Shared.NextBytes(b);
        _sender = new FrameSeal(a, b);
        _receiver = new FrameSeal(b, a);
        _frame = GC.AllocateArray<byte>(PayloadBytes + FrameSeal.TagSize, pinned: true);
        Random.Shared.NextBytes(_frame);
    }

    [Benchmark]
    public bool SealThenOpen()
    {
        _sender.Seal((byte)FrameType.Pages, _frame, PayloadBytes);
        return _receiver.TryOpen((byte)FrameType.Pages, _frame);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _sender.Dispose();
        _receiver.Dispose();
    }
}
