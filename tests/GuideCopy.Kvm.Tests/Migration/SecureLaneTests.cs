using System.Net;
using System.Text;
using GuideCopy.Cli.GuestWatch;
using GuideCopy.Lab;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Controller;
using GuideCopy.Migration.Report;
using GuideCopy.Migration.Control;

namespace GuideCopy.Kvm.Tests.Migration;

/// <summary>
/// A man in the middle on the lab link (<see cref="LaneRelay"/>, in the destination's network
/// namespace, between its pager and the source's page server): it flips a byte, forges a Pages
/// frame and replays an old frame. None of it is installed: each lane that carried an attack is
/// dropped and reconnected, the migration completes, the guest's own checksums are OK, and no
/// forged page is in the destination's RAM. The same relay shows the sealed stream carries no
/// guest memory in clear, where a clear-text run (--insecure-lanes) does.
/// </summary>
[TestFixture]
[Category("Security")]
[NonParallelizable]
public sealed class SecureLaneTests
{
    private const string Name = "gcsec";
    private const string Domain = "sec-kv";
    private const int RelayPort = 7490;

    /// <summary>In every Linux kernel image (linux_banner): guest memory that is surely sent.</summary>
    private static readonly byte[] GuestText = Encoding.ASCII.GetBytes("Linux version ");

    private LabRig _lab = null!;
    private TestGuest _guest = null!;
    private LabHost _on = null!;

    [OneTimeSetUp]
    public void Up()
    {
        _lab = MigrationLab.Up(Name);
        _guest = TestGuest.Boot(_lab, _lab.A, new TestGuestSpec(Domain, "kv", MemoryMiB: 256));
        _guest.WaitForHeartbeats(2, TimeSpan.FromSeconds(120));
        _on = _lab.A;
    }

    [OneTimeTearDown]
    public void Down() => LabRig.Down(Name);

    private LabHost Other => _on == _lab.A ? _lab.B : _lab.A;

    private async Task<(MigrationReport Report, LaneRelay Relay)> HopThroughRelay(bool clearText, params RelayAttack[] attacks)
    {
        var destination = Other;
        LaneRelay? relay = null;
        var plan = new MigrationPlan(Domain, MigrationLab.Target(_on), MigrationLab.Target(destination), "guide", 8_000_000,
            SharedSecret.Read(_lab.SecretFile), GuestWatch: new ConsoleGuestWatch(), ObserveAfter: TimeSpan.Zero, ClearTextLanes: clearText,
            PageServerRoute: real =>
            {
                // The page server is listening now: put the relay in front of it.
                relay = LaneRelay.Start($"/run/netns/{_lab.Layout.Netns(destination.Name)}",
                    new IPEndPoint(IPAddress.Parse(_lab.Layout.Address(destination.Name)), RelayPort), IPEndPoint.Parse(real), attacks);
                return $"{relay.LocalEndPoint.Address}:{RelayPort}";
            });
        var report = await new GuideCopyMigration(plan).RunAsync(CancellationToken.None);
        Assert.That(relay, Is.Not.Null, "the destination was never given the page server");
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
        MigrationLab.AssertOnlyOn(_lab, Domain, destination);
        _on = destination;
        MigrationLab.AssertHeartbeatsContinue(_guest);
        return (report, relay!);
    }

    [Test, Order(1)]
    public async Task FlippedForgedAndReplayedFramesAreNeverInstalled()
    {
        var (report, relay) = await HopThroughRelay(clearText: false, RelayAttack.FlipByte, RelayAttack.ForgePages, RelayAttack.Replay);
        using (relay)
        {
            Assert.That(relay.Done.Select(d => d.Attack), Is.EquivalentTo(new[] { RelayAttack.FlipByte, RelayAttack.ForgePages, RelayAttack.Replay }),
                "the relay made every attack");
            Assert.That(report.Lanes, Is.EqualTo("aegis-256"));
            Assert.That(relay.Connections, Is.GreaterThan(relay.Done.Count + 1), "each attacked lane was dropped and asked for again");
            string log = File.ReadAllText(Path.Combine(_lab.Layout.HostDir(_on.Name), "agent.log"));
            Assert.That(log, Does.Contain("failed authentication"), "the pager says why it dropped the lanes");
            Assert.That(ForgedPagesIn(_on), Is.Zero, "a forged page is in the destination's RAM");
            Assert.That(IndexOf(relay.ServerBytes(), GuestText), Is.EqualTo(-1), "guest memory crossed the link in clear");
        }
    }

    [Test, Order(2)]
    public async Task ClearTextLanesAreReadableWhichIsWhyTheyAreNotTheDefault()
    {
        // The check of the test above can fail: the same relay finds the kernel's banner when
        // the lanes are in clear.
        var (report, relay) = await HopThroughRelay(clearText: true);
        using (relay)
        {
            Assert.That(report.Lanes, Is.EqualTo("clear text"));
            Assert.That(IndexOf(relay.ServerBytes(), GuestText), Is.GreaterThanOrEqualTo(0));
        }
    }

    /// <summary>Pages made entirely of <see cref="LaneRelay.ForgedByte"/> in the guest's RAM file on <paramref name="host"/>.</summary>
    private static int ForgedPagesIn(LabHost host)
    {
        string ram = Directory.GetFiles($"{host.RootPath}{host.RamDir}/libvirt/qemu", "pc.ram", SearchOption.AllDirectories).Single();
        using var f = File.OpenRead(ram);
        var page = new byte[4096];
        int forged = 0;
        while (f.Read(page) == page.Length)
        {
            if (!page.AsSpan().ContainsAnyExcept(LaneRelay.ForgedByte)) forged++;
        }

        return forged;
    }

    private static int IndexOf(byte[] haystack, byte[] needle) => haystack.AsSpan().IndexOf(needle);
}
