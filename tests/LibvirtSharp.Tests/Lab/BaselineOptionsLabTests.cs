using GuideCopy.Lab;
using GuideCopy.Migration.Baselines;
using NUnit.Framework;

namespace LibvirtSharp.Tests.Lab;

/// <summary>The baseline knobs on a memtouch guest: bandwidth cap, the pre-copy timeout's rollback, the preempt refusal.</summary>
[TestFixture]
[Category("Lab")]
[NonParallelizable]
public sealed class BaselineOptionsLabTests
{
    private TestGuest _guest = null!;

    private static LabRig Rig => LabSetUp.Lab;

    [OneTimeSetUp]
    public void BootGuest()
    {
        _guest = TestGuest.Boot(Rig, Rig.A, new TestGuestSpec("lv-knobs", "memtouch", MemoryMiB: 256));
        _guest.WaitForHeartbeats(3, TimeSpan.FromSeconds(120));
    }

    [OneTimeTearDown]
    public void RemoveGuest() => TestGuest.Remove(Rig, _guest.Spec.Name);

    [Test]
    public void BandwidthCapAppliesToThePostCopyPhase()
    {
        const ulong capMiBps = 40;
        var there = GuestMigrations.Migrate(_guest, Rig.A, Rig.B, new BaselineOptions(BaselineMode.PostCopyAtOnce, BandwidthMiBps: capMiBps));
        var back = GuestMigrations.Migrate(_guest, Rig.B, Rig.A, new BaselineOptions(BaselineMode.PostCopyAtOnce));
        // ~200 MiB of non-zero RAM crosses at <= 40 MiB/s after the switch: a capped leg cannot be quick.
        double floorSeconds = there.DataBytes!.Value / (double)(capMiBps << 20) * 0.8;
        TestContext.Out.WriteLine($"capped {there.TotalTime.TotalSeconds:F1} s (floor {floorSeconds:F1} s) vs uncapped {back.TotalTime.TotalSeconds:F1} s");
        Assert.That(there.TotalTime.TotalSeconds, Is.GreaterThan(floorSeconds));
    }

    [Test]
    public void CappedPreCopyThatCannotFinishInTimeIsAbortedAndTheGuestStays()
    {
        // At 8 MiB/s the first pass over ~200 MiB alone takes ~25 s, so 10 s cannot suffice.
        using var source = Connection.Open(Rig.A.LibvirtUri);
        using var destination = Connection.Open(Rig.B.LibvirtUri);
        var options = new BaselineOptions(BaselineMode.PreCopy, BandwidthMiBps: 8, MigrationUri: $"tcp://{Rig.B.Address}",
            Timeout: TimeSpan.FromSeconds(10));
        Assert.Throws<TimeoutException>(() => BaselineMigration.Run(source, destination, _guest.Spec.Name, Rig.B.PeerLibvirtUri, options));

        using var dom = source.LookupDomain(_guest.Spec.Name);
        Assert.That(dom.State.State, Is.EqualTo(Native.virDomainState.VIR_DOMAIN_RUNNING));
        Assert.That(destination.TryLookupDomain(_guest.Spec.Name), Is.Null);
        GuestMigrations.AssertHealthy(_guest);
    }

    [Test]
    public void PostCopyPreemptRunsThroughQmpAndUnknownModesAreRefused()
    {
        // libvirt 11.3 cannot ask for preempt: the mode is QEMU's post-copy driven over QMP.
        Assert.That(BaselineModeNames.Parse("postcopy-preempt"), Is.EqualTo(BaselineMode.QemuPostCopyPreempt));
        Assert.That(BaselineMode.QemuPostCopyPreempt.IsQmpDriven(), Is.True);
        Assert.That(BaselineMode.PostCopyAtOnce.IsQmpDriven(), Is.False);
        var e = Assert.Throws<ArgumentException>(() => BaselineModeNames.Parse("postcopy-fast"));
        Assert.That(e!.Message, Does.Contain("postcopy-preempt"));
    }
}
