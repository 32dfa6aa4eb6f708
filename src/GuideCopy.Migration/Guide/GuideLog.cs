using System.Diagnostics;
using GuideCopy.MemoryPlane;

namespace GuideCopy.Migration.Guide;

/// <summary>
/// Every page the guide touched first, in order, with the time it did. Written only by the
/// guide's fault thread; arrays sized once for the whole RAM, so logging never allocates.
/// 12 bytes per page, uninitialised: the kernel backs only the entries written (pages the guide
/// touched), so the agent's memory grows with the guide's reach, not with the guest's RAM.
/// </summary>
public sealed class GuideLog
{
    /// <summary>A touch's time in the log: 100 µs steps from the log's start (an int lasts 59 hours).</summary>
    private static readonly long TicksPerStep = Math.Max(1, Stopwatch.Frequency / 10_000);

    private readonly long _startTicks = Stopwatch.GetTimestamp();
    private readonly int[] _pages;
    private readonly int[] _steps;
    private readonly int[] _position;
    private long _count;

    public GuideLog(long pageCount)
    {
        Touched = new PageBitmap(pageCount);
        _pages = GC.AllocateUninitializedArray<int>(checked((int)pageCount));
        _steps = GC.AllocateUninitializedArray<int>(checked((int)pageCount));
        // Read only for pages whose Touched bit is set, so it needs no initialisation.
        _position = GC.AllocateUninitializedArray<int>(checked((int)pageCount));
    }

    /// <summary>Pages the guide has touched (first touches only).</summary>
    public PageBitmap Touched { get; }

    public long Count => Volatile.Read(ref _count);

    /// <summary>Stopwatch ticks of the latest first touch (0: none yet).</summary>
    public long LastTouchTicks => Count == 0 ? 0 : TicksAt(Count - 1);

    /// <summary>Appends a first touch; false when the page was already logged.</summary>
    public bool Append(long page)
    {
        if (!Touched.TrySet(page))
        {
            return false;
        }

        long i = _count;
        _pages[i] = (int)page;
        _steps[i] = (int)((Stopwatch.GetTimestamp() - _startTicks) / TicksPerStep);
        Volatile.Write(ref _position[page], (int)i);
        Volatile.Write(ref _count, i + 1);
        return true;
    }

    /// <summary>
    /// Where in the log the guide first touched <paramref name="page"/>, or -1. From any thread: a
    /// page whose Touched bit is seen set before its position was written reads as not logged yet.
    /// </summary>
    public long PositionOf(long page)
    {
        if (!Touched.IsSet(page))
        {
            return -1;
        }

        int position = Volatile.Read(ref _position[page]);
        return position < Volatile.Read(ref _count) && _pages[position] == page ? position : -1;
    }

    public long PageAt(long i) => _pages[i];

    /// <summary>Stopwatch ticks of the i-th first touch, to 100 µs.</summary>
    public long TicksAt(long i) => _startTicks + Volatile.Read(ref _steps[i]) * TicksPerStep;
}
