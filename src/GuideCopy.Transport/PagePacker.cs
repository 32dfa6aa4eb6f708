using System.Diagnostics;
using System.Text.Json.Serialization;
using K4os.Compression.LZ4;

namespace GuideCopy.Transport;

/// <summary>Whether the source compresses page runs on the lanes (<see cref="PagePacker"/>).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<PageCompression>))]
public enum PageCompression : byte
{
    /// <summary>Where it shortens a run's time on the link, measured as the migration goes.</summary>
    Auto = 0,
    /// <summary>Every run that LZ4 shortens by at least <see cref="PagePacker.MinSavingDivisor"/>-th.</summary>
    Lz4 = 1,
    /// <summary>Never: pages cross as they are.</summary>
    Off = 2,
}

/// <summary>
/// Decides, run by run, whether the page server sends a run of data pages as one LZ4 block
/// (<see cref="FrameType.PackedPages"/>), and counts what that saved. Packing B bytes costs B/c
/// of the source's CPU and saves B(1 - 1/r) of link time at L bytes/s, so in
/// <see cref="PageCompression.Auto"/> it packs while c(1 - 1/r) > L: c (pack speed) and r (ratio)
/// are measured on the runs themselves (each packed run, and one run in <see cref="ProbeEvery"/>
/// while not packing, so a guest whose memory turns compressible is noticed), L is the link's
/// drain rate, measured on the sends that blocked (the socket buffer full: the link is the limit),
/// capped by the migration's bandwidth cap. With no drain measured yet (the link keeps up with
/// the source) Auto does not pack: the pages then cost nothing to wait for (docs/memory-plane.md,
/// "Compression", has the figures). One per page server, shared by its lanes (a lock per run: at
/// most one per 4 KiB page, against the microseconds the run's packing and send take).
/// </summary>
public sealed class PagePacker(PageCompression mode, long capBytesPerSecond)
{
    /// <summary>A packed run must be at least 1/8 shorter than its pages: the destination pays a decode for it.</summary>
    public const int MinSavingDivisor = 8;
    /// <summary>While Auto does not pack, one run in this many is packed anyway to keep c and r current.</summary>
    private const int ProbeEvery = 16;
    /// <summary>A send that took longer than this waited for the link (a memcpy of 1 MiB into the socket takes ~0.1 ms).</summary>
    private static readonly long BlockedTicks = Stopwatch.Frequency / 1000;
    /// <summary>Sends shorter than this are demand answers and notices: they never fill the socket buffer, so they say nothing of the link.</summary>
    private const int DrainSampleMinBytes = 64 * 1024;
    /// <summary>Weight of a new sample in the moving averages (1/8: a few runs follow a change, one odd run does not flip the choice).</summary>
    private const double Weight = 1.0 / 8;

    private readonly object _lock = new();
    private double _packBytesPerSecond, _ratio, _drainBytesPerSecond;
    private long _runs;
    private long _dataBytes, _dataWireBytes, _packedRuns;

    /// <summary>Bytes of data pages sent (what they hold), and what their data took on the wire (packed or not).</summary>
    public long DataBytes => Interlocked.Read(ref _dataBytes);
    public long DataWireBytes => Interlocked.Read(ref _dataWireBytes);
    public long PackedRuns => Interlocked.Read(ref _packedRuns);

    /// <summary>Room a lane's packed-frame buffer needs for runs of up to <paramref name="maxRunBytes"/>.</summary>
    public static int BufferSize(int maxRunBytes) =>
        Wire.HeaderSize + Wire.PagesHeaderSize + LZ4Codec.MaximumOutputSize(maxRunBytes) + FrameConnection.TrailerRoom;

    /// <summary>
    /// Packs <paramref name="data"/> into <paramref name="into"/> (at least <see cref="LZ4Codec.MaximumOutputSize"/>
    /// of it) when the policy says so and the block is short enough; false: send the pages as they are.
    /// </summary>
    /// <param name="mayProbe">
    /// False for a demand answer: a fault waits for it, so Auto packs it only where packing pays,
    /// never to measure (the push runs' probes measure for both lanes).
    /// </param>
    public bool TryPack(ReadOnlySpan<byte> data, Span<byte> into, out int packedLength, bool mayProbe = true)
    {
        packedLength = 0;
        if (!ShouldPack(mayProbe)) return false;
        long start = Stopwatch.GetTimestamp();
        int n = LZ4Codec.Encode(data, into, LZ4Level.L00_FAST);
        long ticks = Stopwatch.GetTimestamp() - start;
        lock (_lock)
        {
            Average(ref _packBytesPerSecond, data.Length * (double)Stopwatch.Frequency / Math.Max(1, ticks));
            Average(ref _ratio, n > 0 ? data.Length / (double)n : 1);
        }
        if (n <= 0 || n > data.Length - data.Length / MinSavingDivisor) return false;
        packedLength = n;
        return true;
    }

    /// <summary>Counts a data run that went out: <paramref name="wireBytes"/> of its data on the wire, packed or not.</summary>
    public void Sent(int dataBytes, int wireBytes, bool packed)
    {
        Interlocked.Add(ref _dataBytes, dataBytes);
        Interlocked.Add(ref _dataWireBytes, wireBytes);
        if (packed) Interlocked.Increment(ref _packedRuns);
    }

    /// <summary>A frame of <paramref name="bytes"/> took <paramref name="ticks"/> to hand to the socket: a drain sample if it waited for the link.</summary>
    public void NoteSend(int bytes, long ticks)
    {
        if (mode != PageCompression.Auto || bytes < DrainSampleMinBytes || ticks < BlockedTicks) return;
        lock (_lock) Average(ref _drainBytesPerSecond, bytes * (double)Stopwatch.Frequency / ticks);
    }

    /// <summary>The link rate Auto weighs packing against (bytes/s; 0: not measured, the link keeps up).</summary>
    public double LinkBytesPerSecond
    {
        get
        {
            lock (_lock) return CappedLink(_drainBytesPerSecond);
        }
    }

    private double CappedLink(double drain) =>
        capBytesPerSecond <= 0 ? drain : drain > 0 ? Math.Min(drain, capBytesPerSecond) : capBytesPerSecond;

    private bool ShouldPack(bool mayProbe)
    {
        if (mode == PageCompression.Lz4) return true;
        if (mode == PageCompression.Off) return false;
        double link, pack, ratio;
        lock (_lock)
        {
            link = CappedLink(_drainBytesPerSecond);
            pack = _packBytesPerSecond;
            ratio = _ratio;
        }
        if (mayProbe)
        {
            long run = Interlocked.Increment(ref _runs);
            if (pack == 0 || run % ProbeEvery == 0) return true; // measure before (and while) deciding
        }

        return link > 0 && ratio > 1 && pack * (1 - 1 / ratio) > link;
    }

    private static void Average(ref double average, double sample) =>
        average = average == 0 ? sample : average + Weight * (sample - average);
}
