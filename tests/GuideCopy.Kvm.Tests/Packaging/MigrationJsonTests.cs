using System.Text.Json;
using GuideCopy.Lab;

namespace GuideCopy.Kvm.Tests.Packaging;

/// <summary>
/// The ops-script interface end to end: a real guide-copy migration between the lab's hosts,
/// run through the CLI with --json, validates against docs/report-schema.json; so does the
/// JSON of a refused one; and the exit codes are the documented ones (docs/cli.md).
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class MigrationJsonTests
{
    private const string LabName = "gcpkg";
    private const string Domain = "pkg1";
    private LabRig _lab = null!;

    [OneTimeSetUp]
    public void Up()
    {
        _lab = LabRig.EnsureUp(LabName, out _);
        _lab.StartAgents(["dotnet", CliProcess.DllPath], NativeBuild.Shim);
        var guest = TestGuest.Boot(_lab, _lab.A, new TestGuestSpec(Domain, "kv", MemoryMiB: 384));
        guest.WaitForHeartbeats(3, TimeSpan.FromSeconds(120));
    }

    [OneTimeTearDown]
    public void Down()
    {
        TestGuest.Remove(_lab, Domain);
        LabRig.Down(LabName);
    }

    [Test]
    [Order(1)]
    public void GuideMigrationJsonValidatesAgainstTheSchema()
    {
        var r = CliProcess.Run("migrate", Domain, "--from", $"lab:{LabName}/a", "--to", $"lab:{LabName}/b", "--mode", "guide", "--json", "--observe", "1");
        TestContext.Out.WriteLine(r.StdOut);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.StdErr + r.StdOut);
        Assert.That(ReportSchema.Problems(r.StdOut), Is.Empty, r.StdOut);

        using var doc = JsonDocument.Parse(r.StdOut);
        var root = doc.RootElement;
        Assert.That(root.GetProperty("outcome").GetString(), Is.EqualTo("Completed"));
        Assert.That(root.GetProperty("mode").GetString(), Is.EqualTo("guide"));
        Assert.That(root.GetProperty("pages").GetProperty("total").GetInt64(), Is.EqualTo(384L * 1024 * 1024 / 4096));
        Assert.That(root.GetProperty("downtimeMs").GetDouble(), Is.GreaterThan(0));
        Assert.That(_lab.B.DomainNames(), Does.Contain(Domain));
    }

    [Test]
    [Order(2)]
    public void RefusedMigrationJsonValidatesAndExitsTen()
    {
        // Source and destination the same host: preflight refuses, nothing is paused.
        var r = CliProcess.Run("migrate", Domain, "--from", $"lab:{LabName}/b", "--to", $"lab:{LabName}/b", "--json");
        TestContext.Out.WriteLine(r.StdOut);
        Assert.That(r.ExitCode, Is.EqualTo(10), r.StdErr + r.StdOut);
        Assert.That(ReportSchema.Problems(r.StdOut), Is.Empty, r.StdOut);
        using var doc = JsonDocument.Parse(r.StdOut);
        Assert.That(doc.RootElement.GetProperty("outcome").GetString(), Is.EqualTo("Refused"));
        Assert.That(doc.RootElement.GetProperty("error").GetString(), Does.Contain("same host"));
    }
}
