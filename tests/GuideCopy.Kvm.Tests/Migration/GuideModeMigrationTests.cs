using GuideCopy.Lab;
using GuideCopy.Migration.Report;

namespace GuideCopy.Kvm.Tests.Migration;

/// <summary>
/// `guidecopy migrate --mode guide` on real QEMU guests between the lab's two libvirtds:
/// A -> B -> A -> B for each workload, the guest's own checksums OK after every hop.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class GuideModeMigrationTests
{
    private const string Name = "gcmig";
    private LabRig _lab = null!;

    [OneTimeSetUp]
    public void Up() => _lab = MigrationLab.Up(Name);

    [OneTimeTearDown]
    public void Down() => LabRig.Down(Name);

    [TestCase("memtouch", "auto")]
    [TestCase("sort", "auto")]
    [TestCase("kv", "auto")]
    // Real programs over a text corpus in the page cache, every run LZ4-packed: a packed page
    // that decoded wrong would change a chunk's checksum.
    [TestCase("textsort", "lz4")]
    public void WorkloadHopsThreeTimesWithChecksumsOk(string workload, string compress)
    {
        string domain = $"hop-{workload}";
        var guest = TestGuest.Boot(_lab, _lab.A, new TestGuestSpec(domain, workload, MemoryMiB: 256, WorkMiB: workload.StartsWith("text", StringComparison.Ordinal) ? 48 : 0));
        try
        {
            guest.WaitForHeartbeats(2, TimeSpan.FromSeconds(120));
            var hops = new[] { ("a", "b"), ("b", "a"), ("a", "b") };
            foreach (var (from, to) in hops)
            {
                var (rc, report, err) = MigrationLab.Migrate(_lab, domain, from, to, "--observe", "0", "--compress", compress);
                Assert.That(rc, Is.EqualTo(0), err);
                Assert.That(report!.Outcome, Is.EqualTo(MigrationOutcome.Completed));
                var pages = report.Pages!;
                // Byte counts add up: each page is counted once, by the route that made it
                // present (zero: a hole or an all-zero page, never sent), so the categories sum
                // to the total; what crossed the wire is at least the data pages plus the device state.
                Assert.That(pages.Total, Is.EqualTo(256L * 1024 * 1024 / 4096));
                long sent = pages.Demand + pages.Guide + pages.Locality + pages.Background;
                Assert.That(sent, Is.GreaterThan(0));
                Assert.That(pages.Zero, Is.GreaterThan(0), "a 256 MiB guest has zero pages");
                Assert.That(sent + pages.Zero + pages.Present, Is.EqualTo(pages.Total), $"{pages}: every page in exactly one category");
                // What crossed the wire is at least the page data as sent (packed or not) plus the
                // device state; the data sent covers every data page the destination counted.
                var packing = report.Compression!;
                Assert.That(packing.Policy, Is.EqualTo(compress));
                Assert.That(packing.PageBytes, Is.GreaterThanOrEqualTo(sent * 4096));
                Assert.That(packing.WireBytes, Is.LessThanOrEqualTo(packing.PageBytes));
                Assert.That(report.BytesOnWire, Is.GreaterThanOrEqualTo(packing.WireBytes + report.DeviceStateBytes!.Value));
                if (compress == "lz4")
                {
                    Assert.That(packing.Ratio, Is.GreaterThan(1.3), $"{packing}: text in the page cache packs");
                    Assert.That(report.BytesOnWire, Is.LessThan(sent * 4096), "packed, the pages took less than their size on the wire");
                }
                Assert.That(report.DowntimeMs, Is.GreaterThan(0).And.LessThan(5000));
                // The pause by QEMU's clocks and its three pieces (the lab: one clock): they add up.
                Assert.That(report.DowntimeByQemuClocksMs, Is.GreaterThan(0).And.LessThan(5000));
                var pieces = new[] { "pauseStopToStreamEnd", "pauseStreamEndToRelease", "pauseReleaseToResume" };
                Assert.That(report.PhasesMs.Keys, Is.SupersetOf(pieces), "the pause's breakdown by the clock");
                Assert.That(pieces.Sum(k => report.PhasesMs[k]), Is.EqualTo(report.DowntimeByQemuClocksMs!.Value).Within(0.05));
                Assert.That(report.Guest?.ChecksOk, Is.True, "the guest's self-check after the hop");
                MigrationLab.AssertOnlyOn(_lab, domain, to == "a" ? _lab.A : _lab.B);
                MigrationLab.AssertHeartbeatsContinue(guest);
            }
        }
        finally
        {
            TestGuest.Remove(_lab, domain);
        }
    }

    /// <summary>
    /// migrate --warm-up: kv writes all the time, so some pages go warm and are written after:
    /// the verdict must drop each of them (a stale page used would break kv's checksums). The
    /// second hop warms up a QEMU that guide-copy started (GUIDECOPY_TRACK_WRITES in its XML).
    /// Every page is in one category, warm ones included.
    /// </summary>
    [Test]
    public void WarmUpSendsWhatTheGuestLeavesAloneAndDropsWhatItWroteSince()
    {
        const string domain = "warm-kv";
        var guest = TestGuest.Boot(_lab, _lab.A, new TestGuestSpec(domain, "kv", MemoryMiB: 256));
        try
        {
            guest.WaitForHeartbeats(2, TimeSpan.FromSeconds(120));
            foreach (var (from, to) in new[] { ("a", "b"), ("b", "a") })
            {
                var (rc, report, err) = MigrationLab.Migrate(_lab, domain, from, to, "--observe", "0", "--warm-up", "20");
                Assert.That(rc, Is.EqualTo(0), err);
                var warm = report!.WarmUp!;
                var pages = report.Pages!;
                TestContext.Out.WriteLine($"{from}->{to}: {warm}; {pages}");
                Assert.That(warm.Skipped, Is.Null, "the lab's QEMU is tracked");
                Assert.That(warm.PagesSent, Is.GreaterThan(1000));
                Assert.That(pages.Warm, Is.GreaterThan(0).And.LessThanOrEqualTo(warm.PagesSent), "installed from the warm-up: at most what was sent");
                Assert.That(pages.WarmStale, Is.GreaterThan(0), "kv writes while the warm-up runs");
                Assert.That(pages.Warm + pages.WarmStale, Is.LessThanOrEqualTo(warm.PagesSent + warm.ZeroPagesSent));
                Assert.That(pages.Accounted, Is.EqualTo(pages.Total), $"{pages}: every page in exactly one category");
                Assert.That(report.Guest?.ChecksOk, Is.True, "the guest's self-check after the hop");
                MigrationLab.AssertOnlyOn(_lab, domain, to == "a" ? _lab.A : _lab.B);
                MigrationLab.AssertHeartbeatsContinue(guest);
            }
        }
        finally
        {
            TestGuest.Remove(_lab, domain);
        }
    }

    /// <summary>A QEMU started without the shim's tracking (as a host without it would): no warm-up, and the report says why; the migration goes on.</summary>
    [Test]
    public void WarmUpOfAnUntrackedQemuIsSkippedWithTheReason()
    {
        const string domain = "warm-untracked";
        MigrationLab.StartEdited(_lab, _lab.A, domain, 128,
            xml => System.Text.RegularExpressions.Regex.Replace(xml, "<qemu:commandline>.*?</qemu:commandline>", "", System.Text.RegularExpressions.RegexOptions.Singleline));
        try
        {
            var (rc, report, err) = MigrationLab.Migrate(_lab, domain, "a", "b", "--observe", "0", "--warm-up", "5");
            Assert.That(rc, Is.EqualTo(0), err);
            Assert.That(report!.WarmUp?.Skipped, Does.Contain("GUIDECOPY_TRACK_WRITES=1"));
            Assert.That(report.Pages!.Warm, Is.Zero);
            Assert.That(report.Pages.Accounted, Is.EqualTo(report.Pages.Total));
            // Transient (started with virsh create), so not MigrationLab.AssertOnlyOn's persistent check.
            Assert.That(_lab.B.DomainNames(), Does.Contain(domain));
            Assert.That(_lab.A.DomainNames(), Does.Not.Contain(domain));
            MigrationLab.AssertNoWorkLeft(_lab);
        }
        finally
        {
            TestGuest.Remove(_lab, domain);
        }
    }

    /// <summary>
    /// Two vCPUs, each running its own kv worker with its own self-check (gc.threads defaults to
    /// the online CPUs): every worker's memory must come over right, whichever vCPU faults on it.
    /// </summary>
    [Test]
    public void TwoVcpuGuestHopsWithEveryWorkersChecksumsOk()
    {
        const string domain = "hop-2cpu";
        var guest = TestGuest.Boot(_lab, _lab.A, new TestGuestSpec(domain, "kv", MemoryMiB: 256, Vcpus: 2));
        try
        {
            guest.WaitForHeartbeats(2, TimeSpan.FromSeconds(120));
            Assert.That(File.ReadAllText(guest.ConsolePath), Does.Contain("threads=2"), "one worker per vCPU");
            foreach (var (from, to, guide) in new[] { ("a", "b", "on"), ("b", "a", "off") })
            {
                var (rc, report, err) = MigrationLab.Migrate(_lab, domain, from, to, "--observe", "0", "--guide", guide);
                Assert.That(rc, Is.EqualTo(0), err);
                Assert.That(report!.Outcome, Is.EqualTo(MigrationOutcome.Completed));
                Assert.That(report.Pages!.Accounted, Is.EqualTo(report.Pages.Total));
                Assert.That(report.Guest?.ChecksOk, Is.True, "every worker's self-check after the hop");
                if (report.Guide is { Ran: false } notRun)
                {
                    // A lab host has one CPU: the guide's two vCPUs could not run ahead, so it is not started.
                    Assert.That(notRun.StopReason, Does.Contain("2 vCPUs").And.Contain("without a guide"));
                }

                MigrationLab.AssertOnlyOn(_lab, domain, to == "a" ? _lab.A : _lab.B);
                MigrationLab.AssertHeartbeatsContinue(guest);
            }
        }
        finally
        {
            TestGuest.Remove(_lab, domain);
        }
    }
}
