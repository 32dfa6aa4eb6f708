using GuideCopy.Transport;

namespace GuideCopy.Unit.Tests.Transport;

/// <summary>
/// The push order in isolation (the lab tests drive it through real lanes): the guide's queue
/// first, locality next, the background sweep last; an unpredicted fault's neighbours before the queue.
/// </summary>
public class PushOrderTests
{
    private static List<(long Page, PageOrigin Origin)> Take(PushOrder order, int n)
    {
        var got = new List<(long, PageOrigin)>();
        for (int i = 0; i < n && order.TryNext(out long p, out var o); i++)
        {
            got.Add((p, o));
        }

        return got;
    }

    [TestCase(4096, 32, Description = "128 KiB of 4 KiB pages")]
    [TestCase(2 << 20, 1, Description = "2 MiB pages: the next page only, not 64 MiB")]
    public void LocalityWindowIsTheSameBytesForEveryPageSize(int pageSize, int window) =>
        Assert.That(PushOrder.LocalityWindowFor(pageSize), Is.EqualTo(window));

    [Test]
    public void QueueThenLocalityThenBackground()
    {
        var order = new PushOrder(1000, localityWindow: 2);
        order.EnqueuePush([500, 7, 100]);
        order.NoteDemand(100, predictedAt: 2);
        Assert.That(Take(order, 6), Is.EqualTo(new[]
        {
            (500L, PageOrigin.Push), (7L, PageOrigin.Push), (100L, PageOrigin.Push),
            (101L, PageOrigin.Locality), (102L, PageOrigin.Locality),
            (0L, PageOrigin.Background),
        }));
    }

    [Test]
    public void AnUnpredictedFaultsNeighboursGoAheadOfTheQueue()
    {
        var order = new PushOrder(1000, localityWindow: 2);
        order.EnqueuePush([500, 501]);
        order.NoteDemand(40, predictedAt: -1);
        Assert.That(Take(order, 4), Is.EqualTo(new[]
        {
            (41L, PageOrigin.Locality), (42L, PageOrigin.Locality),
            (500L, PageOrigin.Push), (501L, PageOrigin.Push),
        }));
    }

    [Test]
    public void APredictedFaultMovesThePushPastTheLead()
    {
        // The guide logged pages 10..29 in that order; the destination faults on the 4th (13).
        var order = new PushOrder(1000, localityWindow: 0) { Lead = 5 };
        order.EnqueuePush(Enumerable.Range(10, 20).Select(p => (long)p).ToArray());
        Assert.That(Take(order, 2).Select(t => t.Page), Is.EqualTo(new long[] { 10, 11 }));
        order.NoteDemand(13, predictedAt: 3);
        // Entries 2..8 (pages 12..18) would arrive after the destination needed them: skipped.
        Assert.That(Take(order, 3), Is.EqualTo(new[] { (19L, PageOrigin.Push), (20L, PageOrigin.Push), (21L, PageOrigin.Push) }));
        Assert.That(order.PushSkipped, Is.EqualTo(7));
        Assert.That(order.Overtaken, Is.EqualTo(1), "the fault on entry 3 came before the push took it");
        // A fault behind the push (the destination is slower than the lead) moves nothing.
        order.NoteDemand(12, predictedAt: 2);
        Assert.That(Take(order, 1).Single().Page, Is.EqualTo(22));
        Assert.That(order.PushSkipped, Is.EqualTo(7));
        // Nor does a fault on an entry the push already sent (in flight), though it is within the lead of the push.
        order.NoteDemand(21, predictedAt: 11);
        Assert.That(Take(order, 1).Single().Page, Is.EqualTo(23));
        Assert.That(order.PushSkipped, Is.EqualTo(7));
        Assert.That(order.Overtaken, Is.EqualTo(1), "faults on entries already taken did not overtake the push");
    }

    [Test]
    public void QueueEntriesThatAreAlsoTheNextPagesCanJoinARun()
    {
        var order = new PushOrder(1000);
        order.EnqueuePush([20, 21, 22, 90, 91]);
        Assert.That(order.TryNext(out long first, out _) && first == 20);
        Assert.That(order.TryTakePushIf(21), Is.True);
        Assert.That(order.TryTakePushIf(22), Is.True);
        Assert.That(order.TryTakePushIf(23), Is.False, "90 is next in the queue, not 23");
        Assert.That(Take(order, 2).Select(t => t.Page), Is.EqualTo(new long[] { 90, 91 }));
    }

    [Test]
    public void OutOfRangePagesAreNotQueuedAndTheEndIsReported()
    {
        var order = new PushOrder(2, localityWindow: 4);
        Assert.That(order.EnqueuePush([-1, 2, 1]), Is.EqualTo(1));
        order.NoteDemand(1); // no successor inside the RAM
        Assert.That(Take(order, 10), Is.EqualTo(new[] { (1L, PageOrigin.Push), (0L, PageOrigin.Background), (1L, PageOrigin.Background) }));
        Assert.That(order.TryNext(out _, out _), Is.False);
    }
}
