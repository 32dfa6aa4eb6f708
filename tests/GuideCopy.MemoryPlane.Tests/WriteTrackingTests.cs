using System.Text.RegularExpressions;
using GuideCopy.Lab;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>
/// The kernel facts a warm-up before the pause would stand on (issue 16; docs/memory-plane.md,
/// "Tracking writes while the source runs"): a process that registered its shared RAM mapping
/// with a write-protect userfaultfd (WP_ASYNC, WP_UNPOPULATED) has every page it writes reported
/// to another process by PAGEMAP_SCAN on its pagemap, and only those. Run on this kernel with
/// real processes (native/tools/wp-scan): a page written and not reported would be a stale page
/// at the destination.
/// </summary>
[TestFixture]
public class WriteTrackingTests
{
    [OneTimeSetUp]
    public void Native() => Paths.EnsureNative();

    [TestCase(64, 20, 500)]
    [TestCase(256, 5, 20000)]
    public void EveryPageTheOtherProcessWritesIsReportedAndNoOther(int mib, int rounds, int perRound)
    {
        var r = CommandRunner.Run(Paths.WpScan, mib.ToString(), rounds.ToString(), perRound.ToString());
        TestContext.Out.WriteLine(r.StdOut + r.StdErr);
        var m = Regex.Match(r.StdOut, @"RESULT .*written=(\d+) missed=(\d+) extra=(\d+) before_any_write=(\d+) other_mapping_reported=(\d+)");
        Assert.That(m.Success, Is.True, "wp-scan printed no RESULT: " + r.StdErr);
        Assert.Multiple(() =>
        {
            // rounds x perRound random pages (repeats within a round count once), then every page once.
            Assert.That(long.Parse(m.Groups[1].Value), Is.GreaterThan((long)mib * 256), "pages written");
            Assert.That(m.Groups[2].Value, Is.EqualTo("0"), "written pages the scan did not report");
            Assert.That(m.Groups[3].Value, Is.EqualTo("0"), "reported pages nobody wrote");
            Assert.That(m.Groups[4].Value, Is.EqualTo("0"), "pages reported before any write (unpopulated pages must count as protected)");
            Assert.That(m.Groups[5].Value, Is.EqualTo("0"), "a write through another process's mapping is not the tracked process's");
            Assert.That(r.ExitCode, Is.Zero);
        });
    }
}
