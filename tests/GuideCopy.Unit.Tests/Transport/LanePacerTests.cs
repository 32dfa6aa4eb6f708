using System.Diagnostics;
using GuideCopy.Transport;

namespace GuideCopy.Unit.Tests.Transport;

/// <summary>
/// The push cap: lanes of one bandwidth group share its rate (an evacuation's budget), lanes on
/// their own each have theirs. Lower bounds only: a busy machine makes a pacer slower, never faster.
/// </summary>
public sealed class LanePacerTests
{
    private const long Rate = 20L << 20; // 20 MiB/s
    private const long Run = 256 << 10;  // 256 KiB per Throttle, as a push run
    private const int RunsPerLane = 20;  // 5 MiB per lane

    private static double SecondsForTwoLanes(Func<LanePacer> pacerForLane)
    {
        var clock = Stopwatch.StartNew();
        var lanes = Enumerable.Range(0, 2).Select(_ =>
        {
            var pacer = pacerForLane();
            return Task.Run(() =>
            {
                for (int i = 0; i < RunsPerLane; i++) pacer.Throttle(Run);
            });
        }).ToArray();
        Task.WaitAll(lanes);
        return clock.Elapsed.TotalSeconds;
    }

    [Test]
    public void LanesOfOneGroupShareItsRate()
    {
        string group = "evacuation-" + Guid.NewGuid().ToString("N");
        double seconds = SecondsForTwoLanes(() => LanePacer.ForGroup(group, Rate));
        // 10 MiB at 20 MiB/s: 0.5 s, less the one burst (1/20 s) and the last run's own time.
        double floor = (2.0 * RunsPerLane * Run - Run) / Rate - 0.05;
        Assert.That(seconds, Is.GreaterThanOrEqualTo(floor * 0.95), "two lanes of a group took more than the group's rate");
    }

    [Test]
    public void TheSameGroupIsOnePacerAndNoGroupIsAPacerEach()
    {
        string group = "evacuation-" + Guid.NewGuid().ToString("N");
        Assert.That(LanePacer.ForGroup(group, Rate), Is.SameAs(LanePacer.ForGroup(group, Rate)));
        Assert.That(LanePacer.ForGroup(null, Rate), Is.Not.SameAs(LanePacer.ForGroup(null, Rate)));
        Assert.That(LanePacer.ForGroup("", Rate), Is.Not.SameAs(LanePacer.ForGroup("", Rate)));
    }

    [Test]
    public void NoRateNeverWaits()
    {
        var clock = Stopwatch.StartNew();
        var pacer = LanePacer.ForGroup("g", 0);
        for (int i = 0; i < 1000; i++) pacer.Throttle(1 << 30);
        Assert.That(clock.Elapsed.TotalSeconds, Is.LessThan(5), "no rate: Throttle returns at once");
    }

    [Test]
    public void DemandChargedBytesHoldThePushBackButNeverWait()
    {
        var pacer = LanePacer.ForGroup(null, Rate);
        var clock = Stopwatch.StartNew();
        pacer.Charge(Rate / 2); // half a second of the budget went out as demand answers
        Assert.That(clock.Elapsed.TotalSeconds, Is.LessThan(0.1), "a charge never waits");
        pacer.Throttle(1);
        Assert.That(clock.Elapsed.TotalSeconds, Is.GreaterThanOrEqualTo(0.4), "the push waits for the demand's share");
    }

    [Test]
    public void ADemandStormHoldsThePushAtMostASecondAfterIt()
    {
        var pacer = LanePacer.ForGroup(null, Rate);
        pacer.Charge(Rate * 30); // thirty seconds' worth in a burst of faults
        var clock = Stopwatch.StartNew();
        pacer.Throttle(1);
        Assert.That(clock.Elapsed.TotalSeconds, Is.InRange(0.9, 5.0), "the debt is capped at one second of the rate");
    }
}
