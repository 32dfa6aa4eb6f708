using GuideCopy.Lab;
using GuideCopy.Migration.Report;

namespace GuideCopy.Kvm.Tests.Migration;

/// <summary>
/// Guest RAM on hugetlbfs in 2 MiB pages (memory_backing_dir on a hugetlbfs mount, the lab's
/// --huge-pages): the page server, the pager and the guide move whole 2 MiB pages, and every
/// figure of the report counts them as such. Before, such a guest passed preflight with 4 KiB
/// pages assumed and was refused by the pager mid-migration.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class HugePageMigrationTests
{
    private const string Name = "gchuge";
    private const int HugePage = 2 << 20;
    private LabRig _lab = null!;

    [OneTimeSetUp]
    public void Up()
    {
        LabRig.Down(Name);
        _lab = LabRig.Up(Name, hugePages: true);
        _lab.StartAgents(MigrationLab.AgentLaunch, NativeBuild.Shim);
    }

    [OneTimeTearDown]
    public void Down() => LabRig.Down(Name);

    [Test]
    public void HugePageGuestHopsWithGuideOnAndOffChecksumsOk()
    {
        const string domain = "huge-kv";
        var guest = TestGuest.Boot(_lab, _lab.A, new TestGuestSpec(domain, "kv", MemoryMiB: 256));
        try
        {
            guest.WaitForHeartbeats(2, TimeSpan.FromSeconds(120));
            Assert.That(_lab.A.Check("find", _lab.A.RamDir, "-name", "pc.ram"), Does.Contain(LabHost.HugePageDir), "the guest's RAM file is on the hugetlbfs");
            foreach (var (from, to, guide) in new[] { ("a", "b", "on"), ("b", "a", "off") })
            {
                var (rc, report, err) = MigrationLab.Migrate(_lab, domain, from, to, "--observe", "0", "--guide", guide);
                Assert.That(rc, Is.EqualTo(0), err);
                Assert.That(report!.Outcome, Is.EqualTo(MigrationOutcome.Completed));
                var pages = report.Pages!;
                Assert.That(pages.PageSize, Is.EqualTo(HugePage));
                Assert.That(report.Timeline!.PageSize, Is.EqualTo(HugePage));
                Assert.That(pages.Total * pages.PageSize, Is.EqualTo(256L << 20), "the pages cover the RAM");
                long sent = pages.Demand + pages.Guide + pages.Locality + pages.Background;
                Assert.That(sent + pages.Zero + pages.Present, Is.EqualTo(pages.Total), $"{pages}: every page in exactly one category");
                Assert.That(report.Compression!.PageBytes, Is.GreaterThanOrEqualTo(sent * HugePage), "each page sent crossed whole");
                Assert.That(report.DestinationFaults!.Faults, Is.LessThanOrEqualTo(pages.Total), "a fault is a 2 MiB page's");
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

    [Test]
    public void HugePagesElementIsRefusedNamingTheHugetlbfsRamDir()
    {
        // <hugepages/>: libvirt maps unnamed, preallocated RAM (mem-path a directory), which no
        // source can hold and whose preallocation would fault every page before the pause.
        LabHugePages.EnsureFree(_lab.Layout, 128);
        MigrationLab.StartEdited(_lab, _lab.A, "huge-elem", 256, xml => xml.Replace("<source type='file'/>", "<hugepages/><source type='file'/>"));
        try
        {
            var (rc, report, err) = MigrationLab.Migrate(_lab, "huge-elem", "a", "b");
            Assert.That(rc, Is.EqualTo(10), err);
            Assert.That(report!.Error, Does.Contain("<hugepages/>").And.Contain("memory_backing_dir").And.Contain("hugetlbfs"));
            Assert.That(CommandRunner.Check("virsh", "-c", _lab.A.LibvirtUri, "domstate", "huge-elem").Trim(), Is.EqualTo("running"));
            Assert.That(_lab.B.DomainNames(), Does.Not.Contain("huge-elem"));
        }
        finally
        {
            CommandRunner.Run("virsh", "-c", _lab.A.LibvirtUri, "destroy", "huge-elem");
        }
    }
}
