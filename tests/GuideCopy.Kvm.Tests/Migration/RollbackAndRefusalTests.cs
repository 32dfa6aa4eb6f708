using System.Diagnostics;
using GuideCopy.Lab;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Controller;
using GuideCopy.Migration.Report;

namespace GuideCopy.Kvm.Tests.Migration;

/// <summary>
/// Failures before the commit point roll back (the source runs on, checksums OK, nothing left
/// on the destination); bad input is refused before anything is paused, with a message that
/// names the problem.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class RollbackAndRefusalTests
{
    private const string Name = "gcrb";
    private const string Domain = "rb-kv";
    private LabRig _lab = null!;
    private TestGuest _guest = null!;

    [OneTimeSetUp]
    public void Up()
    {
        _lab = MigrationLab.Up(Name);
        _guest = TestGuest.Boot(_lab, _lab.A, new TestGuestSpec(Domain, "kv", MemoryMiB: 384));
        _guest.WaitForHeartbeats(2, TimeSpan.FromSeconds(120));
    }

    [OneTimeTearDown]
    public void Down() => LabRig.Down(Name);

    private MigrationPlan Plan(Func<Task>? beforeCommit = null) => new(
        Domain, Target(_lab.A), Target(_lab.B), "guide", 0, AgentServer.ReadSecret(_lab.SecretFile),
        ObserveAfter: TimeSpan.Zero, BeforeCommit: beforeCommit);

    private static MigrationTarget Target(LabHost h) => MigrationLab.Target(h);

    private void AssertSourceRunsAndDestinationIsClean()
    {
        Assert.That(CommandRunner.Check("virsh", "-c", _lab.A.LibvirtUri, "domstate", Domain).Trim(), Is.EqualTo("running"));
        Assert.That(_lab.B.DomainNames(), Does.Not.Contain(Domain));
        Assert.That(CommandRunner.Run("pgrep", "-f", $"guest={Domain}").StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(1),
            "exactly one QEMU of the guest (the source) must be left");
        MigrationLab.AssertHeartbeatsContinue(_guest);
    }

    [Test]
    [Category("FaultMatrix")]
    public async Task DestinationQemuKilledWhilePausedRollsBack()
    {
        var report = await new GuideCopyMigration(Plan(() =>
        {
            // The destination QEMU is paused with the device state loaded; it dies now.
            // libvirt's pid file on host b names the destination copy (host a runs the source).
            string pid = File.ReadAllText($"{_lab.B.RootPath}/run/libvirt/qemu/{Domain}.pid").Trim();
            Process.GetProcessById(int.Parse(pid)).Kill();
            return Task.Delay(500);
        })).RunAsync(CancellationToken.None);
        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.RolledBack), report.Error);
        Assert.That(report.Error, Does.Contain("rolled back: the source runs again"));
        AssertSourceRunsAndDestinationIsClean();
    }

    [Test]
    [Category("FaultMatrix")]
    public async Task DestinationAgentStoppedBeforeCommitRollsBack()
    {
        try
        {
            var report = await new GuideCopyMigration(Plan(() =>
            {
                int pid = LabRig.AgentPid(_lab.B) ?? throw new InvalidOperationException("no agent on b");
                Process.GetProcessById(pid).Kill();
                return Task.Delay(300);
            })).RunAsync(CancellationToken.None);
            Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.RolledBack), report.Error);
            Assert.That(report.Error, Does.Contain("destroyed through libvirt"));
            AssertSourceRunsAndDestinationIsClean();
        }
        finally
        {
            _lab.StartAgent(_lab.B, MigrationLab.AgentLaunch);
        }
    }

    [Test]
    [Category("FaultMatrix")]
    public async Task DestinationAgentKilledAfterCommitStallsThenCompletes()
    {
        // Push capped at 40 Mbit/s so the transfer is still running when the agent dies.
        var plan = Plan() with
        {
            BandwidthBytesPerSecond = 5_000_000,
            AfterCommit = async () =>
            {
                int pid = LabRig.AgentPid(_lab.B) ?? throw new InvalidOperationException("no agent on b");
                Process.GetProcessById(pid).Kill();
                await Task.Delay(2000);
                _lab.StartAgent(_lab.B, MigrationLab.AgentLaunch);
            },
        };
        try
        {
            var report = await new GuideCopyMigration(plan).RunAsync(CancellationToken.None);
            Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
            Assert.That(File.ReadAllText(Path.Combine(_lab.Layout.HostDir("b"), "agent.log")), Does.Contain("recovered after an agent restart"));
            MigrationLab.AssertOnlyOn(_lab, Domain, _lab.B);
            MigrationLab.AssertHeartbeatsContinue(_guest);
            // Back to a for the other tests.
            var back = await new GuideCopyMigration(Plan() with { From = Target(_lab.B), To = Target(_lab.A) }).RunAsync(CancellationToken.None);
            Assert.That(back.Outcome, Is.EqualTo(MigrationOutcome.Completed), back.Error);
        }
        finally
        {
            if (LabRig.AgentPid(_lab.B) is null)
            {
                _lab.StartAgent(_lab.B, MigrationLab.AgentLaunch);
            }
        }
    }

    [Test]
    public void UnknownDomainIsRefused()
    {
        var (rc, report, err) = MigrationLab.Migrate(_lab, "no-such-vm", "a", "b");
        Assert.That(rc, Is.EqualTo(10), err);
        Assert.That(report!.Error, Does.Contain("domain 'no-such-vm' not found"));
        AssertSourceRunsAndDestinationIsClean();
    }

    [Test]
    public void RamNotASharedFileIsRefusedWithTheFix()
    {
        // A guest whose RAM is anonymous memory: guide-copy cannot take it over.
        string xml = TestGuest.DomainXml(_lab, new TestGuestSpec("rb-anon", "memtouch", MemoryMiB: 256))
            .Replace("<source type='file'/>", "<source type='anonymous'/>").Replace("<access mode='shared'/>", "<access mode='private'/>");
        string file = Path.Combine(_lab.SharedDir, "rb-anon.xml");
        File.WriteAllText(file, xml);
        CommandRunner.Check("virsh", "-c", _lab.A.LibvirtUri, "create", file);
        try
        {
            var (rc, report, err) = MigrationLab.Migrate(_lab, "rb-anon", "a", "b");
            Assert.That(rc, Is.EqualTo(10), err);
            Assert.That(report!.Error, Does.Contain("needs a named RAM file").And.Contain("<source type='file'/>"));
            Assert.That(CommandRunner.Check("virsh", "-c", _lab.A.LibvirtUri, "domstate", "rb-anon").Trim(), Is.EqualTo("running"));
        }
        finally
        {
            CommandRunner.Run("virsh", "-c", _lab.A.LibvirtUri, "destroy", "rb-anon");
        }
    }

    [Test]
    public void UnreachableAgentIsRefused()
    {
        var (rc, report, err) = MigrationLab.Migrate(_lab, Domain, "a", "b", "--to-agent", "unix:/run/guidecopy-nowhere.sock");
        Assert.That(rc, Is.EqualTo(10), err);
        Assert.That(report!.Error, Does.Contain("unreachable").And.Contain("guidecopy agent"));
        AssertSourceRunsAndDestinationIsClean();
    }

    [Test]
    public void WrongSecretIsRefused()
    {
        string bad = Path.Combine(_lab.SharedDir, "wrong-secret");
        File.WriteAllText(bad, "this-is-not-the-lab-secret-at-all");
        var (rc, report, err) = MigrationLab.Migrate(_lab, Domain, "a", "b", "--secret-file", bad);
        Assert.That(rc, Is.EqualTo(10), err);
        Assert.That(report!.Error, Does.Contain("refused us: authentication failed"));
        AssertSourceRunsAndDestinationIsClean();
    }

    [Test]
    public void DestinationWithoutShimIsRefused()
    {
        string hidden = _lab.ShimLibrary + ".hidden";
        File.Move(_lab.ShimLibrary, hidden);
        try
        {
            var (rc, report, err) = MigrationLab.Migrate(_lab, Domain, "a", "b");
            Assert.That(rc, Is.EqualTo(10), err);
            Assert.That(report!.Error, Does.Contain("shim").And.Contain("is missing"));
            AssertSourceRunsAndDestinationIsClean();
        }
        finally
        {
            File.Move(hidden, _lab.ShimLibrary);
        }
    }
}
