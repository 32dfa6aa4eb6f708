using GuideCopy.Cli.GuestWatch;
using GuideCopy.Guest;

namespace GuideCopy.Unit.Tests.Cli;

/// <summary>
/// The report's lost work and longest pause (<see cref="ThroughputWindows.LostWorkOf"/>), from
/// heartbeats as the console follower stamps them: what a guest that stalls loses, in seconds of
/// its own work, and nothing for one that does not.
/// </summary>
public class ThroughputWindowsTests
{
    private static readonly DateTime T0 = new(2026, 12, 7, 0, 0, 0, DateTimeKind.Utc);

    /// <summary>One beat a second for <paramref name="seconds"/> s, 1000 work a second, none in the stalled seconds.</summary>
    private static List<Heartbeat> Beats(int seconds, Func<int, bool> stalled)
    {
        var beats = new List<Heartbeat>();
        ulong work = 5000;
        for (int t = 0; t <= seconds; t++)
        {
            if (t > 0 && !stalled(t)) work += 1000;
            beats.Add(new Heartbeat(t, t * 1000, "kv", work, 1000, "OK", $"GCHB seq={t}", T0.AddSeconds(t)));
        }

        return beats;
    }

    [Test]
    public void AGuestThatNeverStallsLosesNothing()
    {
        var (lost, window, pause) = ThroughputWindows.LostWorkOf(Beats(60, _ => false), beforeRate: 1000);
        Assert.That((lost, window, pause), Is.EqualTo(((double?)0, (double?)60, (double?)1)));
    }

    [Test]
    public void AFiveSecondStallLosesFiveSecondsAndIsTheLongestPause()
    {
        var (lost, window, pause) = ThroughputWindows.LostWorkOf(Beats(60, t => t is >= 11 and <= 15), beforeRate: 1000);
        Assert.That(lost, Is.EqualTo(5).Within(1e-9));
        Assert.That(window, Is.EqualTo(60));
        Assert.That(pause, Is.EqualTo(6), "last progress at 10 s, the next at 16 s");
    }

    [Test]
    public void AGuestAtHalfItsRateLosesHalfTheWindow()
    {
        var (lost, _, pause) = ThroughputWindows.LostWorkOf(Beats(60, t => t % 2 == 0), beforeRate: 1000);
        Assert.That(lost, Is.EqualTo(30).Within(1e-9));
        Assert.That(pause, Is.EqualTo(2));
    }

    [Test]
    public void OnlyTheFirstSixtySecondsCountAndAStallStillGoingCountsToo()
    {
        var beats = Beats(90, t => t > 50);
        var (lost, window, pause) = ThroughputWindows.LostWorkOf(beats, beforeRate: 1000);
        Assert.That(window, Is.EqualTo(60));
        Assert.That(lost, Is.EqualTo(10).Within(1e-9));
        Assert.That(pause, Is.EqualTo(10), "no progress from 50 s to the window's end");
    }

    [Test]
    public void NoRateBeforeNoLostWork()
    {
        var (lost, window, _) = ThroughputWindows.LostWorkOf(Beats(10, _ => false), beforeRate: null);
        Assert.That(lost, Is.Null);
        Assert.That(window, Is.EqualTo(10));
    }
}
