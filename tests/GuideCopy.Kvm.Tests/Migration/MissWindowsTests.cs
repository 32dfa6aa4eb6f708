using GuideCopy.Migration.Guide;

namespace GuideCopy.Kvm.Tests.Migration;

/// <summary>
/// The guide's miss rule in isolation (GuideTests drive it through real migrations): a demand
/// page the guide had not touched yet is a miss only if it is still untouched a window later.
/// </summary>
public class MissWindowsTests
{
    [Test]
    public void AMissIsJudgedAWindowLate()
    {
        var touched = new HashSet<long>();
        var windows = new MissWindows();
        windows.Record(1, touched: false);
        windows.Record(2, touched: false);
        windows.Record(3, touched: false);
        windows.Record(4, touched: true);
        Assert.That(windows.CloseWindow(touched.Contains), Is.EqualTo((0L, 0L)), "the first close has no earlier window to judge");

        touched.Add(2); // the guide was behind on page 2 and caught up
        windows.Record(5, touched: false);
        Assert.That(windows.CloseWindow(touched.Contains), Is.EqualTo((4L, 2L)), "pages 1 and 3 stayed untouched");
        Assert.That(windows.CloseWindow(touched.Contains), Is.EqualTo((1L, 1L)), "page 5");
        Assert.That(windows.CloseWindow(touched.Contains), Is.EqualTo((0L, 0L)));
    }

    [Test]
    public void MissesBeyondTheCapacityCountAsMisses()
    {
        var windows = new MissWindows(capacityPerWindow: 2);
        for (long p = 0; p < 5; p++) windows.Record(p, touched: false);
        windows.CloseWindow(_ => true);
        Assert.That(windows.CloseWindow(_ => true), Is.EqualTo((5L, 3L)), "two were re-checked (touched now), three could not be");
    }

    [Test]
    public void RecordingWhileAWindowIsJudgedLosesNothing()
    {
        var windows = new MissWindows();
        long recorded = 0, judgedDemand = 0;
        using var stop = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        var demand = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                windows.Record(recorded % 1000, touched: recorded % 2 == 0);
                recorded++;
            }
        });
        while (!demand.IsCompleted)
        {
            judgedDemand += windows.CloseWindow(_ => false).Demand;
        }

        judgedDemand += windows.CloseWindow(_ => false).Demand;
        judgedDemand += windows.CloseWindow(_ => false).Demand;
        Assert.That(judgedDemand, Is.EqualTo(recorded));
    }
}
