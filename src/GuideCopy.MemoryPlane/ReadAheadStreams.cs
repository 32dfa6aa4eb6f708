namespace GuideCopy.MemoryPlane;

/// <summary>
/// How many pages to install for a fault, as the kernel's page cache sizes read-ahead for a file
/// read sequentially (mm/readahead.c: a hit on the expected next index grows the window, a miss
/// starts it again), but for several streams at once: a fault on the page right after the last
/// run of one of the streams doubles that stream's next run, up to the maximum; any other fault
/// opens a new stream (the least recently used one is forgotten) and installs one page.
/// <para>
/// Several streams because real jobs interleave them: sort's merge reads two runs of its input
/// and writes its output (three streams, a fault on each in turn), its verify sweep reads an
/// array and that array's checksums. With one stream, each fault "broke" the previous stream and
/// every run stayed at one page. A guest touching pages at random opens a new stream per fault
/// and keeps runs of one, so what it is given stays exactly what it touched.
/// </para>
/// Not thread-safe: one fault thread owns it. No allocation after construction.
/// </summary>
public sealed class ReadAheadStreams
{
    private readonly long[] _next;
    private readonly int[] _size;
    private readonly long[] _used;
    private long _clock;
    private int _current;

    public ReadAheadStreams(int maxPages, int streams = 8)
    {
        if (streams < 1) throw new ArgumentOutOfRangeException(nameof(streams));
        MaxPages = Math.Max(1, maxPages);
        _next = new long[streams];
        _size = new int[streams];
        _used = new long[streams];
        Array.Fill(_next, -1);
    }

    public int MaxPages { get; }

    /// <summary>
    /// The run to install for a fault on <paramref name="page"/> (at least 1, at most
    /// <see cref="MaxPages"/>); call <see cref="Installed"/> with where the run really ended.
    /// </summary>
    public int SizeFor(long page)
    {
        _clock++;
        int oldest = 0;
        for (int s = 0; s < _next.Length; s++)
        {
            if (_next[s] == page)
            {
                _current = s;
                _used[s] = _clock;
                return _size[s] = Math.Min(_size[s] * 2, MaxPages);
            }

            if (_used[s] < _used[oldest]) oldest = s;
        }

        _current = oldest;
        _used[oldest] = _clock;
        return _size[oldest] = 1;
    }

    /// <summary>The last run asked for ended before <paramref name="end"/> (exclusive): a fault there continues its stream.</summary>
    public void Installed(long end) => _next[_current] = end;
}
