using GuideCopy.Migration.Report;

namespace GuideCopy.Unit.Tests.Report;

/// <summary>The terminal table an operator reads after `guidecopy migrate` and `compare`.</summary>
[TestFixture]
public sealed class ReportTableTests
{
    private static MigrationReport Report(string mode, Dictionary<string, double> phases, double? byQemu) => new()
    {
        Mode = mode, Domain = "vm1", Source = "a", Destination = "b", Outcome = MigrationOutcome.Completed,
        DowntimeMs = 9, DowntimeByQemuClocksMs = byQemu, PhasesMs = phases,
    };

    [Test]
    public void ThePauseByTheClockIsShownInItsThreePiecesWhereTheReportHasThem()
    {
        var guide = Report("guide", new() { ["pauseStopToStreamEnd"] = 3.04, ["pauseStreamEndToRelease"] = 2.5, ["pauseReleaseToResume"] = 0.46 }, 6.0);
        var qemu = Report("qemu-postcopy", [], 7.2);
        string[] lines = ReportTable.Render([guide, qemu]).Split('\n');
        string pieces = lines.Single(l => l.TrimStart().StartsWith("stop>end>release>resume", StringComparison.Ordinal));
        Assert.That(pieces, Does.Contain("3.0+2.5+0.5 ms"));
        Assert.That(pieces.TrimEnd(), Does.EndWith("-"), "a mode without the breakdown shows none");
        Assert.That(lines.Single(l => l.StartsWith("downtime (QEMU clocks)", StringComparison.Ordinal)), Does.Contain("6 ms").And.Contain("7 ms"));
    }
}
