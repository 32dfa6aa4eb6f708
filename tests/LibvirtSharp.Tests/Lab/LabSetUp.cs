using GuideCopy.Lab;
using NUnit.Framework;

namespace LibvirtSharp.Tests.Lab;

/// <summary>
/// Brings up this project's own lab "lv" (docs/lab.md) once for every fixture in this namespace,
/// and at the end removes any lv-* guest left behind and takes the lab down.
/// </summary>
[SetUpFixture]
public sealed class LabSetUp
{
    public const string LabName = "lv";

    private static LabRig? _lab;

    public static LabRig Lab => _lab ?? throw new InvalidOperationException("the lab is not up");

    /// <summary>A small test guest's XML for this lab (memtouch workload).</summary>
    public static string GuestXml(string name, int memoryMiB = 128) =>
        TestGuest.DomainXml(Lab, new TestGuestSpec(name, "memtouch", MemoryMiB: memoryMiB));

    [OneTimeSetUp]
    public void BringUp()
    {
        _lab = LabRig.EnsureUp(LabName, out _);
        TestGuest.StageImages(_lab);
    }

    [OneTimeTearDown]
    public void TakeDown()
    {
        if (_lab is null) return;
        foreach (var host in _lab.Hosts)
            foreach (string name in host.DomainNames().Where(n => n.StartsWith("lv-", StringComparison.Ordinal)))
                TestGuest.Remove(_lab, name);
        LabRig.Down(LabName);
        _lab = null;
    }
}
