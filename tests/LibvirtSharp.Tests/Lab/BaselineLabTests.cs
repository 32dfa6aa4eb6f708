using GuideCopy.Lab;
using GuideCopy.Migration.Baselines;
using NUnit.Framework;

namespace LibvirtSharp.Tests.Lab;

/// <summary>
/// Each libvirt baseline moves a running test guest (each workload) from host a to b and back;
/// after every leg its heartbeats must go on with the memory self-check OK. A pre-copy that does
/// not converge within its timeout (a guest dirtying RAM faster than the link) must be aborted
/// with the guest unharmed on the source: that is pre-copy's failure mode, not a test failure.
/// </summary>
[TestFixture("memtouch")]
[TestFixture("sort")]
[TestFixture("kv")]
[Category("Lab")]
[NonParallelizable]
public sealed class BaselineLabTests(string workload)
{
    private static readonly TimeSpan PreCopyTimeout = TimeSpan.FromSeconds(60);
    private TestGuest _guest = null!;

    private static LabRig Rig => LabSetUp.Lab;

    [OneTimeSetUp]
    public void BootGuest()
    {
        _guest = TestGuest.Boot(Rig, Rig.A, new TestGuestSpec("lv-" + workload, workload, MemoryMiB: 256));
        _guest.WaitForHeartbeats(3, TimeSpan.FromSeconds(120));
    }

    [OneTimeTearDown]
    public void RemoveGuest() => TestGuest.Remove(Rig, _guest.Spec.Name);

    [TestCase(BaselineMode.PreCopy)]
    [TestCase(BaselineMode.PostCopy)]
    [TestCase(BaselineMode.PostCopyAtOnce)]
    public void MigratesToTheOtherHostAndBack(BaselineMode mode)
    {
        var options = new BaselineOptions(mode, Timeout: PreCopyTimeout);
        var (home, away) = HostsFromWhereTheGuestRuns();
        foreach (var (from, to) in new[] { (home, away), (away, home) })
        {
            BaselineResult r;
            try
            {
                r = GuestMigrations.Migrate(_guest, from, to, options);
            }
            catch (TimeoutException) when (mode == BaselineMode.PreCopy)
            {
                using var source = Connection.Open(from.LibvirtUri);
                using var dom = source.LookupDomain(_guest.Spec.Name);
                Assert.That(dom.State.State, Is.EqualTo(Native.virDomainState.VIR_DOMAIN_RUNNING), "an aborted pre-copy must leave the guest running");
                GuestMigrations.AssertHealthy(_guest);
                TestContext.Out.WriteLine($"{workload} {from.Name}->{to.Name}: pre-copy did not converge within {PreCopyTimeout.TotalSeconds} s; aborted, guest fine on {from.Name}");
                return;
            }
            Assert.That(r.DataBytes, Is.GreaterThan(0UL));
            Assert.That(r.MemoryTotalBytes, Is.GreaterThanOrEqualTo(256UL << 20)); // RAM plus ROMs
            if (mode == BaselineMode.PreCopy) Assert.That(r.Downtime, Is.Not.Null);
            if (mode == BaselineMode.PostCopyAtOnce) Assert.That(r.EnteredPostCopy, Is.True);
            AssertPagesAddUp(r);
        }
    }

    /// <summary>
    /// The report's page categories from QEMU's own counters: every page of the VM's RAM (ROMs
    /// included) sent at least once, so the categories add up to the total; what QEMU sent more
    /// than that is the duplicate crossings (pre-copy's dirty re-sends).
    /// </summary>
    private static void AssertPagesAddUp(BaselineResult r)
    {
        var pages = BaselinePages.From(r);
        Assert.That(pages, Is.Not.Null, $"QEMU's page counters: {string.Join(", ", r.Stats.Keys)}");
        Assert.That(pages!.Total, Is.EqualTo((long)r.MemoryTotalBytes!.Value / 4096));
        Assert.That(pages.Accounted, Is.EqualTo(pages.Total), $"{pages}: every page sent at least once");
        Assert.That(pages.Duplicate, Is.GreaterThanOrEqualTo(0));
        Assert.That(pages.Demand, Is.LessThanOrEqualTo(pages.Total));
    }

    /// <summary>
    /// QEMU's post-copy driven over QMP, with and without the preempt channel (libvirt 11.3 cannot
    /// ask for preempt): the guest moves and back with its self-check OK, the destination's
    /// blocktime is reported, and the VM's QEMU keeps no post-copy capability switched on (a later
    /// migration, libvirt's or ours, would otherwise be refused by QEMU).
    /// </summary>
    [TestCase(BaselineMode.QemuPostCopy)]
    [TestCase(BaselineMode.QemuPostCopyPreempt)]
    public void QemuPostCopyMovesTheGuestAndLeavesNoCapabilityOn(BaselineMode mode)
    {
        var (home, away) = HostsFromWhereTheGuestRuns();
        foreach (var (from, to) in new[] { (home, away), (away, home) })
        {
            var r = GuestMigrations.Migrate(_guest, from, to, new BaselineOptions(mode));
            Assert.That(r.EnteredPostCopy, Is.True);
            Assert.That(r.DataBytes, Is.GreaterThan(0UL));
            Assert.That(r.BlockTime, Is.Not.Null, "postcopy-blocktime was on at the destination");
            Assert.That(r.PostCopyRequests, Is.Not.Null);
            Assert.That((string)r.Stats["capabilities"], Does.Contain(mode == BaselineMode.QemuPostCopyPreempt ? "postcopy-preempt" : "postcopy-ram"));
            AssertPagesAddUp(r);

            using var conn = Connection.Open(to.LibvirtUri);
            using var moved = conn.LookupDomain(_guest.Spec.Name);
            string caps = moved.QemuMonitorCommand("{\"execute\":\"query-migrate-capabilities\"}");
            var on = System.Text.Json.Nodes.JsonNode.Parse(caps)!["return"]!.AsArray()
                .Where(c => c!["state"]!.GetValue<bool>()).Select(c => c!["capability"]!.GetValue<string>()).ToList();
            Assert.That(on, Has.None.StartsWith("postcopy"), "post-copy capabilities left on in the VM's QEMU");
        }
    }

    private (LabHost Home, LabHost Away) HostsFromWhereTheGuestRuns()
    {
        using var a = Connection.Open(Rig.A.LibvirtUri);
        using var onA = a.TryLookupDomain(_guest.Spec.Name);
        return onA is { IsActive: true } ? (Rig.A, Rig.B) : (Rig.B, Rig.A);
    }
}
