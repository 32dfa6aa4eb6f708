namespace GuideCopy.MemoryPlane.Tests;

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

    [Test]
    public void QueueThenLocalityThenBackground()
    {
        var order = new PushOrder(1000, localityWindow: 2);
        order.EnqueuePush([500, 7]);
        order.NoteDemand(100, predicted: true);
        Assert.That(Take(order, 6), Is.EqualTo(new[]
        {
            (500L, PageOrigin.Push), (7L, PageOrigin.Push),
            (101L, PageOrigin.Locality), (102L, PageOrigin.Locality),
            (0L, PageOrigin.Background), (1L, PageOrigin.Background),
        }));
    }

    [Test]
    public void AnUnpredictedFaultsNeighboursGoAheadOfTheQueue()
    {
        var order = new PushOrder(1000, localityWindow: 2);
        order.EnqueuePush([500, 501]);
        order.NoteDemand(40, predicted: false);
        Assert.That(Take(order, 4), Is.EqualTo(new[]
        {
            (41L, PageOrigin.Locality), (42L, PageOrigin.Locality),
            (500L, PageOrigin.Push), (501L, PageOrigin.Push),
        }));
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
