using GuideCopy.Lab;

namespace GuideCopy.Kvm.Tests.Packaging;

/// <summary>
/// packaging/apparmor-libvirt-qemu compiled by the real apparmor_parser into the per-domain
/// profiles libvirt makes (libvirt-UUID): each domain's profile names its own socket
/// directory and no other domain's, nor any RAM file. (The kernel here may lack AppArmor:
/// the parser compiles without loading, -Q.)
/// </summary>
[TestFixture]
public sealed class AppArmorTests
{
    private const string A = "0a1b2c3d-0000-4000-8000-00000000000a", B = "0a1b2c3d-0000-4000-8000-00000000000b";

    /// <summary>The file rules of a libvirt-<paramref name="uuid"/> profile including the abstraction, as the parser expands them.</summary>
    private static string[] RulesOf(string uuid)
    {
        if (!File.Exists("/usr/sbin/apparmor_parser") && !File.Exists("/sbin/apparmor_parser"))
        {
            Assert.Ignore("apparmor_parser is not installed (package apparmor)");
        }

        string profile = Path.Combine(Path.GetTempPath(), $"gc-aa-{Guid.NewGuid():N}");
        File.WriteAllText(profile, $"profile libvirt-{uuid} flags=(attach_disconnected) {{\n  #include \"{RepoFile.PathOf("packaging/apparmor-libvirt-qemu")}\"\n}}\n");
        try
        {
            var r = CommandRunner.Run("apparmor_parser", "-Q", "-T", "-D", "rule-exprs", "-S", profile);
            Assert.That(r.ExitCode, Is.Zero, r.StdErr);
            return r.StdErr.Split('\n').Where(l => l.StartsWith("rule: ", StringComparison.Ordinal)).Select(l => l[6..l.IndexOf("  ->", StringComparison.Ordinal)]).ToArray();
        }
        finally
        {
            File.Delete(profile);
        }
    }

    [Test]
    public void EachDomainReachesOnlyItsOwnSockets()
    {
        var rules = RulesOf(A);
        Assert.That(rules, Does.Contain($"/run/guidecopy/work/libvirt-{A}/"));
        var underWork = rules.Where(r => r.StartsWith("/run/guidecopy/work/", StringComparison.Ordinal)).ToArray();
        Assert.That(underWork, Is.All.EqualTo("/run/guidecopy/work/").Or.StartsWith($"/run/guidecopy/work/libvirt-{A}/"),
            "nothing under the work dir but the work dir itself (traverse) and this domain's own directory");
        Assert.That(RulesOf(B).Where(r => r.Contains(A)), Is.Empty, "another domain's profile must not name this one's paths");
    }

    [Test]
    public void NoDomainIsGivenGuestRam()
    {
        // libvirt labels each domain's own RAM directory into that domain's profile itself.
        Assert.That(RulesOf(A).Where(r => r.Contains("libvirt-ram") || r.StartsWith("/dev/shm", StringComparison.Ordinal)), Is.Empty);
    }
}
