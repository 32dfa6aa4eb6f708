using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>
/// The source's order for pages nobody asked for yet: (b) the push queue, filled by other code
/// (the guide's access log), then (c) pages near recent demand faults, then (d) a background
/// sweep in address order. One exception: the neighbours of a fault the push queue did not
/// predict (the guide never touched that page) go before the queue, since the queue has just
/// shown it does not know that region and locality is the better guess there. Callers skip
/// pages already sent or zero. Allocation-free after construction; one lock, held for a few
/// instructions.
/// </summary>
public sealed class PushOrder
{
    private readonly object _lock = new();
    private readonly Ring _push;
    private readonly Ring _locality;
    private readonly Ring _unpredicted;
    private readonly int _localityWindow;
    private long _cursor;
    private long _pushTaken, _pushSkipped, _overtaken;

    /// <param name="pushCapacity">
    /// Room in the push queue; default one entry per page, so a queue fed each page at most once
    /// (the guide logs first touches) never drops one, and an entry's sequence number is its
    /// position in the feeder's log (what <see cref="NoteDemand"/>'s predictedAt refers to).
    /// </param>
    public PushOrder(long pageCount, int pushCapacity = 0, int localityCapacity = 1 << 14, int localityWindow = DefaultLocalityWindow)
    {
        PageCount = pageCount;
        _push = new Ring(pushCapacity > 0 ? pushCapacity : (int)Math.Max(1, pageCount));
        _locality = new Ring(localityCapacity);
        _unpredicted = new Ring(localityCapacity);
        _localityWindow = localityWindow;
    }

    /// <summary>
    /// Pages after a fault taken as its neighbours (128 KiB of 4 KiB pages): the run a sequential
    /// reader reaches within a few of its faults' round trips, not so long that one fault's
    /// neighbours crowd out the next fault's (docs/memory-plane.md, "The source: `PageServer`").
    /// </summary>
    public const int DefaultLocalityWindow = 32;

    /// <summary>
    /// The window for a page size: the same 128 KiB, at least the next page. With 2 MiB pages a
    /// window of 32 would queue 64 MiB per fault: on a 512 MiB guest the first few faults' neighbours
    /// took every page and left the guide's order nothing to push (measured: 0 of 186 pages pushed).
    /// </summary>
    public static int LocalityWindowFor(int pageSize) => Math.Max(1, DefaultLocalityWindow * 4096 / pageSize);

    /// <summary>The neighbours each demand fault queues (<see cref="DefaultLocalityWindow"/> unless set).</summary>
    public int LocalityWindow => _localityWindow;

    public long PageCount { get; }

    /// <summary>Adds pages to the push queue, in order; out-of-range entries are ignored. Returns how many were queued (a full queue drops the rest).</summary>
    public int EnqueuePush(ReadOnlySpan<long> pages)
    {
        lock (_lock)
        {
            int n = 0;
            foreach (long p in pages)
                if ((ulong)p < (ulong)PageCount && _push.TryAdd(p)) n++;
            return n;
        }
    }

    /// <summary>
    /// How many queue entries past a predicted fault the push jumps to (0: none), when that fault
    /// overtook the push (its entry not taken yet). A page leaves the source some time before the
    /// destination can use it (the socket's unsent bytes, the host's queue, the link): when the
    /// destination faults on queue entry i ahead of the push, it is at i, and entries i+1 ..
    /// i+lead would reach it only after it has faulted on them too; sending them then only makes
    /// the link carry each twice. So the push goes on from i+1+lead, and the skipped entries come
    /// by demand or, if never touched, by the background sweep.
    /// <para>
    /// A fault on an entry the push had already taken (in flight) moves nothing: the push is
    /// ahead, only not by enough. Jumping then skipped pages the destination needed next
    /// (docs/tuning.md, "Push order"): the guide's log is not the destination's order page for page, since
    /// read-ahead logs a run of one stream before the next stream's, where the guest alternates.
    /// </para>
    /// </summary>
    public long Lead { get; set; }

    /// <summary>Demand faults on queue entries the push had not taken yet: the destination overtook the push.</summary>
    public long Overtaken { get { lock (_lock) return _overtaken; } }

    /// <summary>Queue entries skipped by <see cref="Lead"/> so far.</summary>
    public long PushSkipped { get { lock (_lock) return _pushSkipped; } }

    /// <summary>
    /// A demand fault on <paramref name="page"/>: its successors are likely next. When the push
    /// queue had not predicted it (<paramref name="predictedAt"/> -1), they go ahead of the queue;
    /// when it had (the page is queue entry <paramref name="predictedAt"/>), the destination has
    /// reached that entry and the push moves on past it by <see cref="Lead"/>.
    /// </summary>
    public void NoteDemand(long page, long predictedAt = -1)
    {
        lock (_lock)
        {
            var ring = predictedAt >= 0 ? _locality : _unpredicted;
            for (long p = page + 1; p <= page + _localityWindow && p < PageCount; p++)
            {
                if (!ring.TryAdd(p)) { ring.TryTake(out _); ring.TryAdd(p); } // keep the newest
            }

            if (predictedAt >= _pushTaken)
            {
                _overtaken++;
                long target = predictedAt + 1 + Lead;
                while (_pushTaken < target && Lead > 0 && _push.TryTake(out _))
                {
                    _pushTaken++;
                    _pushSkipped++;
                }
            }
        }
    }

    /// <summary>Next candidate page and why; false when the background sweep is done and the queues are empty.</summary>
    public bool TryNext(out long page, out PageOrigin origin)
    {
        lock (_lock)
        {
            if (_unpredicted.TryTake(out page)) { origin = PageOrigin.Locality; return true; }
            if (_push.TryTake(out page)) { _pushTaken++; origin = PageOrigin.Push; return true; }
            if (_locality.TryTake(out page)) { origin = PageOrigin.Locality; return true; }
            origin = PageOrigin.Background;
            if (_cursor < PageCount) { page = _cursor++; return true; }
            page = -1;
            return false;
        }
    }

    /// <summary>
    /// Takes the push queue's head if it is <paramref name="page"/>: a run of queue entries that are
    /// also neighbouring pages (a guide walking memory in order) goes out as one frame, in the
    /// queue's own order, without the syscall and frame per page a lone entry costs.
    /// </summary>
    public bool TryTakePushIf(long page)
    {
        lock (_lock)
        {
            if (!_push.TryPeek(out long head) || head != page) return false;
            _push.TryTake(out _);
            _pushTaken++;
            return true;
        }
    }

    /// <summary>Peek whether a page is next in the background sweep (to extend a run cheaply).</summary>
    public void SkipBackground(long upTo)
    {
        lock (_lock) if (_cursor <= upTo) _cursor = upTo + 1;
    }

    /// <summary>After a reconnect: sweep again from the start (callers skip what the destination has).</summary>
    public void RestartBackground()
    {
        lock (_lock) _cursor = 0;
    }

    public int PushQueued { get { lock (_lock) return _push.Count; } }

    private sealed class Ring(int capacity)
    {
        // int: a page index (< 2^31, 8 TiB of 4 KiB pages); 4 bytes a page for the push queue, which holds one per page.
        private readonly int[] _items = GC.AllocateUninitializedArray<int>(capacity); // read only where written
        private int _head, _count;
        public int Count => _count;
        public bool TryAdd(long v)
        {
            if (_count == _items.Length) return false;
            _items[(_head + _count++) % _items.Length] = (int)v;
            return true;
        }
        public bool TryPeek(out long v)
        {
            v = _count == 0 ? -1 : _items[_head];
            return _count > 0;
        }
        public bool TryTake(out long v)
        {
            if (_count == 0) { v = -1; return false; }
            v = _items[_head];
            _head = (_head + 1) % _items.Length;
            _count--;
            return true;
        }
    }
}
