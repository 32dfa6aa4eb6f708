using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using GuideCopy.MemoryPlane;
using GuideCopy.Transport;

namespace GuideCopy.Benchmarks;

/// <summary>
/// The checks every frame passes (<see cref="FrameCodec"/>): the header before a byte of
/// payload is read, a Pages frame's header against the session's page count, and a demand
/// frame of the size the pager sends when faults queue up.
/// </summary>
[MemoryDiagnoser]
public class FrameCodecBenchmarks
{
    private const int PageSize = 4096;
    private const long PageCount = 1L << 17; // a 512 MiB guest
    private readonly byte[] _header = new byte[8];
    private readonly byte[] _pages = new byte[Wire.PagesHeaderSize + 64 * PageSize];
    private readonly long[] _demandPages = new long[32];
    private byte[] _demand = null!;

    [GlobalSetup]
    public void Setup()
    {
        BinaryPrimitives.WriteUInt16LittleEndian(_header, Wire.Magic);
        _header[2] = (byte)FrameType.Pages;
        BinaryPrimitives.WriteUInt32LittleEndian(_header.AsSpan(4), (uint)(_pages.Length + FrameSeal.TagSize));
        for (int i = 0; i < _demandPages.Length; i++) _demandPages[i] = i * 977 % PageCount;
        _demand = new byte[FrameCodec.DemandSize(_demandPages.Length)];
    }

    [Benchmark]
    public int ReadHeader() => FrameCodec.ReadHeader(_header, PageSize, authenticated: true, isSealed: true).Length;

    [Benchmark]
    public long WriteThenReadPagesHeader()
    {
        FrameCodec.WritePagesHeader(_pages, 4096, 64, PageOrigin.Push);
        return FrameCodec.ReadPages(_pages, PageSize, PageCount).First;
    }

    [Benchmark]
    public long WriteThenReadDemand32()
    {
        FrameCodec.WriteDemand(_demand, _demandPages);
        int n = FrameCodec.ReadDemandCount(_demand);
        long sum = 0;
        for (int i = 0; i < n; i++) sum += FrameCodec.DemandPage(_demand, i, PageCount);
        return sum;
    }
}
