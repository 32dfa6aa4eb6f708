using System.Text;
using BenchmarkDotNet.Attributes;
using GuideCopy.MemoryPlane;
using GuideCopy.Transport;

namespace GuideCopy.Benchmarks;

/// <summary>
/// The page packer's cost per run (<see cref="PagePacker"/>, <see cref="FrameCodec.ReadPackedPages"/>):
/// packing a demand page and a 1 MiB push run of text like the textsort guest's page cache, the
/// destination's decode of that run, and packing a run of random words (memtouch, kv), which
/// LZ4 cannot shorten and which is therefore sent as it is: the cost of a wasted probe.
/// </summary>
[MemoryDiagnoser]
public class PagePackerBenchmarks
{
    private const int Run = 1 << 20;
    private readonly byte[] _text = new byte[Run];
    private readonly byte[] _random = new byte[Run];
    private readonly byte[] _packed = new byte[PagePacker.BufferSize(Run)];
    private readonly byte[] _unpacked = new byte[Run];
    private readonly PagePacker _packer = new(PageCompression.Lz4, 0);
    private int _packedLength;

    [GlobalSetup]
    public void Setup()
    {
        // Lines like the guest corpus: a number, words from a small vocabulary, an amount.
        string[] words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"];
        var rng = new Random(1);
        var sb = new StringBuilder(Run + 100);
        while (sb.Length < Run)
        {
            sb.Append($"7:{rng.Next(9_999_999):D7} {words[rng.Next(words.Length)]} {words[rng.Next(words.Length)]} {rng.Next(100_000)}.{rng.Next(100):D2}\n");
        }
        Encoding.ASCII.GetBytes(sb.ToString(0, Run), _text);
        rng.NextBytes(_random);
        const int room = Wire.HeaderSize + Wire.PagesHeaderSize;
        _packer.TryPack(_text, _packed.AsSpan(room), out _packedLength);
        FrameCodec.WritePagesHeader(_packed.AsSpan(Wire.HeaderSize), 0, Run / 4096, PageOrigin.Push);
    }

    [Benchmark]
    public bool PackDemandPageOfText() => _packer.TryPack(_text.AsSpan(0, 4096), _packed.AsSpan(Wire.HeaderSize + Wire.PagesHeaderSize), out _);

    [Benchmark]
    public bool PackPushRunOfText() => _packer.TryPack(_text, _packed.AsSpan(Wire.HeaderSize + Wire.PagesHeaderSize), out _);

    [Benchmark]
    public bool PackPushRunOfRandomWords() => _packer.TryPack(_random, _packed.AsSpan(Wire.HeaderSize + Wire.PagesHeaderSize), out _);

    [Benchmark]
    public int UnpackPushRunOfText() =>
        FrameCodec.ReadPackedPages(_packed.AsSpan(Wire.HeaderSize, Wire.PagesHeaderSize + _packedLength), 4096, 1 << 17, _unpacked).Count;
}
