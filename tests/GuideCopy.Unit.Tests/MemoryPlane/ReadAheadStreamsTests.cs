namespace GuideCopy.Unit.Tests.MemoryPlane;

/// <summary>
/// The guide's read-ahead sizing: interleaved sequential streams each grow their run, random
/// faults stay at one page (so a random guest's log is exactly what it touched).
/// </summary>
public class ReadAheadStreamsTests
{
    /// <summary>Plays faults the way the guide's fault thread does: fault at a stream's next page, install the run.</summary>
    private static List<int> Walk(ReadAheadStreams ra, long[] starts, int faultsPerStream)
    {
        var next = (long[])starts.Clone();
        var sizes = new List<int>();
        for (int f = 0; f < faultsPerStream; f++)
        {
            for (int s = 0; s < next.Length; s++)
            {
                int size = ra.SizeFor(next[s]);
                sizes.Add(size);
                next[s] += size;
                ra.Installed(next[s]);
            }
        }

        return sizes;
    }

    [Test]
    public void OneSequentialStreamDoublesUpToTheMaximum()
    {
        var sizes = Walk(new ReadAheadStreams(32), [1000], 8);
        Assert.That(sizes, Is.EqualTo(new[] { 1, 2, 4, 8, 16, 32, 32, 32 }));
    }

    [Test]
    public void ThreeInterleavedStreamsEachGrow()
    {
        // sort's merge: two input runs and the output, one fault on each in turn.
        var sizes = Walk(new ReadAheadStreams(16), [0, 50_000, 100_000], 6);
        Assert.That(sizes.Skip(15), Is.EqualTo(new[] { 16, 16, 16 }), "the sixth fault of every stream gets the full run");
        Assert.That(sizes.Take(3), Is.EqualTo(new[] { 1, 1, 1 }), "each stream starts at one page");
    }

    [Test]
    public void RandomFaultsStayAtOnePage()
    {
        var ra = new ReadAheadStreams(32);
        var rng = new Random(7);
        for (int i = 0; i < 10_000; i++)
        {
            long page = rng.NextInt64(1 << 20);
            int size = ra.SizeFor(page);
            Assert.That(size, Is.EqualTo(1), $"fault {i} on page {page}");
            ra.Installed(page + size);
        }
    }

    [Test]
    public void MoreStreamsThanSlotsForgetsTheOldest()
    {
        var ra = new ReadAheadStreams(32, streams: 2);
        Assert.That(Walk(ra, [0, 10_000, 20_000], 3), Is.All.EqualTo(1), "three streams through two slots evict each other");
        var fresh = new ReadAheadStreams(32, streams: 3);
        Assert.That(Walk(fresh, [0, 10_000, 20_000], 3).Skip(6), Is.All.EqualTo(4));
    }

    [Test]
    public void ARunCutShortContinuesWhereItEnded()
    {
        var ra = new ReadAheadStreams(32);
        Assert.That(ra.SizeFor(100), Is.EqualTo(1));
        ra.Installed(101);
        Assert.That(ra.SizeFor(101), Is.EqualTo(2));
        ra.Installed(102); // page 102 was already there: the run stopped after one page
        Assert.That(ra.SizeFor(103), Is.EqualTo(1), "103 is not where the run ended");
        Assert.That(ra.SizeFor(102), Is.EqualTo(4), "a fault where the short run ended continues that stream");
    }
}
