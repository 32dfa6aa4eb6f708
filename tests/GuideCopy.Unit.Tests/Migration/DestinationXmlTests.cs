using GuideCopy.Migration.Definitions;

namespace GuideCopy.Unit.Tests.Migration;

/// <summary>
/// What a VM's next migration keeps of the XML a guide-copy migration gave its QEMU: nothing of
/// that migration (its -incoming, its RAM registration, its agent's socket), but the shim's write
/// tracking, so the VM can warm up again whichever mode moves it next.
/// </summary>
[TestFixture]
public sealed class DestinationXmlTests
{
    private const string Plain = "<domain type='qemu'><name>vm</name><memory unit='KiB'>262144</memory></domain>";
    private static readonly DestinationXml.ShimSettings Shim = new("/usr/local/lib/guidecopy/libguidecopy-shim.so", "/dev/shm/", "/run/guidecopy/shim.sock");

    [Test]
    public void TheNextMigrationKeepsTheTrackingAndDropsTheRest()
    {
        string arrived = DestinationXml.ForIncoming(Plain, Shim);
        string next = DestinationXml.WithoutOurAdditions(arrived);
        Assert.Multiple(() =>
        {
            Assert.That(arrived, Does.Contain("GUIDECOPY_TRACK_WRITES").And.Contain("-incoming").And.Contain("GUIDECOPY_AGENT_SOCKET"));
            Assert.That(next, Does.Not.Contain("-incoming").And.Not.Contain("GUIDECOPY_RAM_PATH").And.Not.Contain("GUIDECOPY_AGENT_SOCKET"));
            Assert.That(next, Does.Contain("GUIDECOPY_TRACK_WRITES").And.Contain("LD_PRELOAD"));
        });
    }

    [Test]
    public void AnotherIncomingQemuGetsEachSettingOnce()
    {
        string again = DestinationXml.ForIncoming(DestinationXml.WithoutOurAdditions(DestinationXml.ForIncoming(Plain, Shim)), Shim);
        foreach (string name in new[] { "LD_PRELOAD", "GUIDECOPY_TRACK_WRITES", "GUIDECOPY_RAM_PATH", "-incoming" })
        {
            Assert.That(again.Split(name).Length - 1, Is.EqualTo(1), name);
        }
    }

    [Test]
    public void QemusOwnPostCopyDestinationKeepsTheTracking()
    {
        string next = DestinationXml.ForIncoming(DestinationXml.WithoutOurAdditions(DestinationXml.ForIncoming(Plain, Shim)), shim: null);
        Assert.That(next, Does.Contain("GUIDECOPY_TRACK_WRITES").And.Contain("LD_PRELOAD").And.Not.Contain("GUIDECOPY_AGENT_SOCKET"));
    }

    [Test]
    public void WithoutTrackingTheShimGoesToo()
    {
        string untracked = DestinationXml.ForIncoming(Plain, Shim).Replace("GUIDECOPY_TRACK_WRITES", "SOMETHING_ELSE");
        Assert.That(DestinationXml.WithoutOurAdditions(untracked), Does.Not.Contain("LD_PRELOAD"));
    }
}
