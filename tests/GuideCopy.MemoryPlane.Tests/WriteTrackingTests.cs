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

    /// <summary>
    /// The tracker the warm-up uses, on a real process started the way GuideCopy starts QEMU
    /// (the shim preloaded, GUIDECOPY_TRACK_WRITES=1): taken from outside with pidfd_getfd, it
    /// reports exactly the pages the process wrote (ramtouch's mixed pass writes every other page
    /// it touches), none it only read, nothing while it is idle; and the process's own check of
    /// every byte passes under the write protection.
    /// </summary>
    [Test]
    public void TrackerTakenFromTheShimReportsExactlyThePagesWritten()
    {
        const int pages = 4096;
        string file = $"/dev/shm/gc-track-{Environment.ProcessId}";
        try
        {
            CommandRunner.Run(Paths.RamTouch, "gen", file, pages.ToString());
            using var touch = ChildProcess.Start("ramtouch", Paths.RamTouch, ["run", file, pages.ToString(), "holdmixed", "7"],
                new Dictionary<string, string> { ["LD_PRELOAD"] = Paths.Shim, ["GUIDECOPY_TRACK_WRITES"] = "1" }, stdin: true);
            touch.WaitFor("MAPPED", TimeSpan.FromSeconds(10));
            using var tracker = RamWriteTracker.TryAttach(touch.Process.Id, file, 4096, out string? why);
            Assert.That(tracker, Is.Not.Null, why);
            long first = tracker!.Scan((_, _) => { });
            long idle = tracker.Scan((_, _) => { });
            touch.Process.StandardInput.WriteLine("go");
            string result = touch.WaitFor("RESULT", TimeSpan.FromSeconds(30));
            var written = new HashSet<long>();
            long reported = tracker.Scan((p, n) => { for (long i = 0; i < n; i++) written.Add(p + i); });
            long after = tracker.Scan((_, _) => { });
            TestContext.Out.WriteLine($"first scan {first}, idle {idle}, after the pass {reported}, again {after}; {result}");
            touch.Process.StandardInput.WriteLine("done");
            Assert.Multiple(() =>
            {
                Assert.That(result, Does.Contain("ok=1"), "the process's own check of every byte");
                Assert.That(idle, Is.Zero, "pages reported while the process did nothing");
                Assert.That(reported, Is.EqualTo(pages / 2), "ramtouch writes every other page it touches");
                Assert.That(written, Has.Count.EqualTo(pages / 2), "each page reported once");
                Assert.That(after, Is.Zero, "the scan protects what it reports again");
                Assert.That(touch.WaitForExit(TimeSpan.FromSeconds(10)), Is.Zero);
            });
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Test]
    public void ProcessWithoutTheTrackingUffdIsRefusedWithTheFix()
    {
        const int pages = 256;
        string file = $"/dev/shm/gc-notrack-{Environment.ProcessId}";
        try
        {
            CommandRunner.Run(Paths.RamTouch, "gen", file, pages.ToString());
            using var touch = ChildProcess.Start("ramtouch", Paths.RamTouch, ["run", file, pages.ToString(), "hold"],
                new Dictionary<string, string> { ["LD_PRELOAD"] = Paths.Shim }, stdin: true);
            touch.WaitFor("MAPPED", TimeSpan.FromSeconds(10));
            using var tracker = RamWriteTracker.TryAttach(touch.Process.Id, file, 4096, out string? why);
            touch.Process.StandardInput.WriteLine("go");
            Assert.That(tracker, Is.Null);
            Assert.That(why, Does.Contain("GUIDECOPY_TRACK_WRITES=1"));
        }
        finally
        {
            File.Delete(file);
        }
    }
}
