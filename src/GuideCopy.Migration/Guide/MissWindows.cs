namespace GuideCopy.Migration.Guide;

/// <summary>
/// The guide control loop's view of destination demand, judged one window late: a demand page
/// the guide has not touched *yet* is only a miss if the guide still has not touched it a whole
/// window later. A guide that is briefly behind the destination (both start from the same
/// state; the destination can be first on a page for a moment, e.g. while the guide's QEMU waits
/// for the source CPU) touches those pages soon after and is not stopped for it; a guide that
/// went another way never does (docs/tuning.md, "Misses are judged a window late").
/// <para>
/// Demand thread: <see cref="Record"/> per demand fault. Control timer: <see cref="CloseWindow"/>.
/// One lock, held for a few instructions; arrays sized once (no allocation per fault). Misses
/// beyond the capacity of a window are counted but not re-checked: they count as misses.
/// </para>
/// </summary>
public sealed class MissWindows
{
    private readonly object _lock = new();
    private long[] _current, _previous;
    private int _currentCount, _previousCount;
    private long _currentDemand, _previousDemand, _currentOverflow, _previousOverflow;

    public MissWindows(int capacityPerWindow = 1 << 16)
    {
        _current = new long[capacityPerWindow];
        _previous = new long[capacityPerWindow];
    }

    /// <summary>A destination demand fault; <paramref name="touched"/>: the guide had logged the page.</summary>
    public void Record(long page, bool touched)
    {
        lock (_lock)
        {
            _currentDemand++;
            if (touched) return;
            if (_currentCount < _current.Length) _current[_currentCount++] = page;
            else _currentOverflow++;
        }
    }

    /// <summary>
    /// Ends the current window (call from one thread only). Returns the window before it: its
    /// demand faults, and how many of its pages the guide had not touched then and still has not
    /// touched now (per <paramref name="touchedNow"/>).
    /// </summary>
    public (long Demand, long Misses) CloseWindow(Func<long, bool> touchedNow)
    {
        // The previous window's buffer is not written any more (Record writes the current one
        // only), so it is read without the lock; then it becomes the buffer of the new window.
        long misses = 0;
        for (int i = 0; i < _previousCount; i++)
        {
            if (!touchedNow(_previous[i])) misses++;
        }

        lock (_lock)
        {
            var judged = (_previousDemand, misses + _previousOverflow);
            (_previous, _current) = (_current, _previous);
            (_previousCount, _previousDemand, _previousOverflow) = (_currentCount, _currentDemand, _currentOverflow);
            (_currentCount, _currentDemand, _currentOverflow) = (0, 0, 0);
            return judged;
        }
    }
}
