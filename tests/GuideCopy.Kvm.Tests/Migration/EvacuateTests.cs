using System.Text.Json;
using GuideCopy.Lab;
using GuideCopy.Migration.Report;

namespace GuideCopy.Kvm.Tests.Migration;

/// <summary>
/// `guidecopy evacuate`: every running domain that meets the requirements moves, two at a time,
/// under one bandwidth budget, while another tenant's TCP stream shares the link; a domain that
/// does not meet them stays, running, with the reason.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class EvacuateTests
{
    private const string Name = "gcevac";
    private LabRig _lab = null!;

    [OneTimeSetUp]
    public void Up() => _lab = MigrationLab.Up(Name);

    [OneTimeTearDown]
    public void Down() => LabRig.Down(Name);

    [Test]
    public void EvacuationMovesEveryQualifyingGuestAndLeavesTheRestRunning()
    {
        string[] movers = ["ev-1", "ev-2"];
        var guests = movers.Select(d => TestGuest.Boot(_lab, _lab.A, new TestGuestSpec(d, "kv", MemoryMiB: 256))).ToList();
        MigrationLab.StartEdited(_lab, _lab.A, "ev-anon", 128, MigrationLab.WithAnonymousRam);
        try
        {
            foreach (var g in guests)
            {
                g.WaitForHeartbeats(2, TimeSpan.FromSeconds(120));
            }

            var r = CliProcess.Run(["evacuate", "--from", $"lab:{Name}/a", "--to", $"lab:{Name}/b", "--parallel", "2", "--bandwidth", "400mbit",
                "--neighbour", "--neighbour-seconds", "3", "--observe", "0", "--json"]);
            Assert.That(r.ExitCode, Is.EqualTo(0), r.StdErr + r.StdOut);
            using var doc = JsonDocument.Parse(r.StdOut);
            var root = doc.RootElement;
            var reports = root.GetProperty("reports").Deserialize<List<MigrationReport>>(MigrationReport.Json)!;
            Assert.That(reports.Select(x => x.Domain), Is.EquivalentTo(movers));
            foreach (var report in reports)
            {
                Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
                Assert.That(report.Guest?.ChecksOk, Is.True, $"{report.Domain}: the guest's self-check after the move");
                Assert.That(report.Pages!.Accounted, Is.EqualTo(report.Pages.Total));
                MigrationLab.AssertOnlyOn(_lab, report.Domain, _lab.B);
            }

            foreach (var g in guests)
            {
                MigrationLab.AssertHeartbeatsContinue(g);
            }

            var skipped = root.GetProperty("skipped").EnumerateArray().ToList();
            Assert.That(skipped.Select(s => s.GetProperty("domain").GetString()), Is.EqualTo(new[] { "ev-anon" }));
            Assert.That(skipped[0].GetProperty("reason").GetString(), Does.Contain("<source type='file'/>"), "the skip names the fix");
            Assert.That(CommandRunner.Check("virsh", "-c", _lab.A.LibvirtUri, "domstate", "ev-anon").Trim(), Is.EqualTo("running"));
            Assert.That(_lab.B.DomainNames(), Does.Not.Contain("ev-anon"));

            // Two at a time: the evacuation took less than its migrations one after another.
            Assert.That(root.GetProperty("wallSeconds").GetDouble(), Is.LessThan(root.GetProperty("sumOfMigrationSeconds").GetDouble()));
            var neighbour = root.GetProperty("neighbour");
            Assert.That(neighbour.TryGetProperty("failure", out _), Is.False, "the neighbour's stream ran throughout");
            Assert.That(neighbour.GetProperty("beforeBytesPerSecond").GetDouble(), Is.GreaterThan(0));
            Assert.That(neighbour.GetProperty("duringBytesPerSecond").GetDouble(), Is.GreaterThan(0), "the neighbour kept some of the link");
            Assert.That(neighbour.GetProperty("samples").GetArrayLength(), Is.GreaterThanOrEqualTo(6));
        }
        finally
        {
            CommandRunner.Run("virsh", "-c", _lab.A.LibvirtUri, "destroy", "ev-anon");
            foreach (var d in movers)
            {
                TestGuest.Remove(_lab, d);
            }
        }
    }
}
