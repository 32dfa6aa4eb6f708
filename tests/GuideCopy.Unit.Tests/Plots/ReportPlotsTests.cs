using System.Xml.Linq;
using GuideCopy.Migration.Report;
using GuideCopy.Plots;

namespace GuideCopy.Unit.Tests.Plots;

/// <summary>
/// The pictures from a report's timeline: real SVG files an operator can open, with a line per
/// mode and a band per route. (The lab's `compare --plot` run, whose pictures are in docs/plots,
/// is the same code fed by real migrations.)
/// </summary>
[TestFixture]
public sealed class ReportPlotsTests
{
    private string _dir = "";

    [SetUp]
    public void MakeDir() => _dir = Directory.CreateTempSubdirectory("gc-plots-").FullName;

    [TearDown]
    public void RemoveDir() => Directory.Delete(_dir, recursive: true);

    private static MigrationReport Report(string mode, bool guide, double stallP99) => new()
    {
        Mode = mode, Domain = "vm1", Source = "a", Destination = "b", Outcome = MigrationOutcome.Completed,
        Guest = new GuestThroughput("kv", 1000, 700, 1000, 0.7, 1, true, 20, null),
        Guide = guide ? new GuideReport(true, 10, 10, 0.5, 0, 0, 0, 1, 0.1, "idle") : null,
        DestinationFaults = new FaultStats(100, 100, 0.5, stallP99, stallP99 * 2, 50),
        Timeline = new MigrationTimeline(
            Enumerable.Range(-5, 20).Select(t => new GuestWorkSample(t, t is >= 0 and < 3 ? 300 : 1000)).ToList(),
            mode == "guide" ? Enumerable.Range(0, 10).Select(t => new PagesSample(t, 100L * t, 300L * t, 50L * t, 10L * t, 1000)).ToList() : [],
            12_500_000),
    };

    [Test]
    public void EachPictureIsAnSvgWithItsLinesAndBands()
    {
        var reports = new[] { Report("guide", true, 3), Report("guide", false, 4), Report("qemu-postcopy", false, 9) };
        string work = Path.Combine(_dir, "work.svg"), stalls = Path.Combine(_dir, "stalls.svg"), pages = Path.Combine(_dir, "pages.svg");
        ReportPlots.GuestWork(reports, work);
        ReportPlots.Stalls(reports, stalls);
        ReportPlots.PagesByRoute(reports[0], pages);
        foreach (string file in new[] { work, stalls, pages })
        {
            var svg = XDocument.Load(file);
            Assert.That(svg.Root!.Name.LocalName, Is.EqualTo("svg"), file);
            Assert.That(svg.Descendants().Count(e => e.Name.LocalName is "path" or "polyline" or "line" or "rect"), Is.GreaterThan(10), file);
        }

        Assert.That(Text(work), Does.Contain("1. guide").And.Contain("2. guide (guide off)").And.Contain("3. qemu-postcopy").And.Contain("switchover"));
        Assert.That(Text(pages), Does.Contain("demand").And.Contain("push (guide order)").And.Contain("the cap (100 Mbit/s)"));
        Assert.That(Text(stalls), Does.Contain("p99"));
    }

    [Test]
    public void APngIsWrittenWhenTheNameSaysSo()
    {
        string file = Path.Combine(_dir, "work.png");
        ReportPlots.GuestWork([Report("guide", true, 3)], file);
        byte[] head = File.ReadAllBytes(file)[..8];
        Assert.That(head, Is.EqualTo(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }));
    }

    private static string Text(string svgFile) => string.Concat(XDocument.Load(svgFile).Descendants().Where(e => e.Name.LocalName == "text").Select(e => e.Value + " "));
}
