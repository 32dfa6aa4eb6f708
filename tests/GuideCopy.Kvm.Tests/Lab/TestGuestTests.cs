using GuideCopy.Lab;

namespace GuideCopy.Kvm.Tests.Lab;

/// <summary>Real QEMU guests on both lab hosts: each workload boots and reports OK heartbeats.</summary>
[TestFixture]
[NonParallelizable]
public sealed class TestGuestTests
{
    private const string Name = "gcguest";
    private LabRig _lab = null!;

    [OneTimeSetUp]
    public void Up() => _lab = LabRig.EnsureUp(Name, out _);

    [OneTimeTearDown]
    public void Down() => LabRig.Down(Name);

    [TestCase("memtouch", "a")]
    [TestCase("sort", "b")]
    [TestCase("kv", "a")]
    public void WorkloadBootsAndReportsOkHeartbeats(string workload, string hostName)
    {
        var host = _lab.Hosts.Single(h => h.Name == hostName);
        string domain = $"t-{workload}";
        var guest = TestGuest.Boot(_lab, host, new TestGuestSpec(domain, workload, MemoryMiB: 384));
        try
        {
            Assert.That(host.DomainNames(), Does.Contain(domain));
            var beats = guest.WaitForHeartbeats(4, TimeSpan.FromSeconds(120));
            Assert.That(beats.Select(b => b.Workload), Is.All.EqualTo(workload));
            Assert.That(beats.Select(b => b.Check), Is.All.EqualTo("OK"), string.Join('\n', guest.Console.Errors()));
            Assert.That(beats[^1].Work, Is.GreaterThan(beats[0].Work), "the work counter must advance");
            Assert.That(beats.Select(b => b.Seq), Is.Ordered.Ascending);

            // The RAM is a shared file in the host's own tmpfs, where guide-copy needs it.
            string ramFiles = host.Check("find", host.RamDir, "-name", "pc.ram");
            Assert.That(ramFiles, Does.Contain(domain));
        }
        finally
        {
            TestGuest.Remove(_lab, domain);
        }

        Assert.That(host.DomainNames(), Does.Not.Contain(domain));
    }
}
