using System.Diagnostics;
using GuideCopy.Cli.GuestWatch;
using GuideCopy.Lab;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Controller;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Report;
using GuideCopy.Migration.Control;

namespace GuideCopy.Kvm.Tests.Migration;

/// <summary>
/// The local attacker of issue 14 during a real guide-copy migration in the lab
/// (docs/security.md, "Local users"): on the destination host, processes that are not its QEMU
/// lie in wait for the shim socket and connect to it first with a uffd of their own — an
/// unprivileged user, the same user in QEMU's group (past the directory's mode, so the
/// agent's own SO_PEERCRED uid check is what refuses it), QEMU's own uid and group (past the
/// uid check too: libvirt's pid is what refuses it) — and others try to unlink and rebind the
/// socket. All are refused, each for its reason; the migration completes and the guest's own
/// checksums are OK.
/// </summary>
[TestFixture]
[Category("Lab")]
[NonParallelizable]
public sealed class LocalAttackerTests
{
    private const string Name = "gcla";
    private const string Domain = "la-kv";
    private LabRig _lab = null!;
    private TestGuest _guest = null!;

    [OneTimeSetUp]
    public void Up()
    {
        LocalAttacker.EnsureUser();
        _lab = MigrationLab.Up(Name);
        _guest = TestGuest.Boot(_lab, _lab.A, new TestGuestSpec(Domain, "kv", MemoryMiB: 384));
        _guest.WaitForHeartbeats(2, TimeSpan.FromSeconds(120));
    }

    [OneTimeTearDown]
    public void Down() => LabRig.Down(Name);

    /// <summary>shim-peer inside <paramref name="host"/>'s namespaces as <paramref name="user"/>:<paramref name="group"/> with <paramref name="groups"/>.</summary>
    private static Process Attacker(LabHost host, string user, string group, string[] groups, params string[] args)
    {
        var argv = LocalAttacker.As(user, group, groups, LocalAttacker.ShimPeer, args);
        return host.Start(argv[0], argv[1..]);
    }

    private static string Said(Process p)
    {
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        TestContext.Progress.WriteLine($"attacker {p.Id}: {output.Trim().Replace('\n', ' ')}");
        return output;
    }

    [Test]
    public async Task ImpostorsAtTheShimSocketAreRefusedAndTheMigrationCompletes()
    {
        var destination = _lab.B;
        string uuid = CommandRunner.Check("virsh", "-c", _lab.A.LibvirtUri, "domuuid", Domain).Trim();
        string shimSocket = $"/run/guidecopy/work/libvirt-{uuid}/shim.sock";
        var options = new AgentOptions();
        string qemuUser = options.QemuUser, qemuGroup = options.QemuGroup, attacker = LocalAttacker.User;

        // Lying in wait before the migration starts: each connects the moment the socket exists, before QEMU can.
        var inGroup = Attacker(destination, attacker, attacker, [qemuGroup], "send", shimSocket, "uffd", "", "120000");
        var asQemu = Attacker(destination, qemuUser, qemuGroup, [qemuGroup], "send", shimSocket, "uffd", "", "120000");
        string outsider = "", outsiderRebind = "", groupRebind = "";
        var plan = new MigrationPlan(Domain, MigrationLab.Target(_lab.A), MigrationLab.Target(destination), "guide", 8_000_000,
            SharedSecret.Read(_lab.SecretFile), GuestWatch: new ConsoleGuestWatch(), ObserveAfter: TimeSpan.Zero,
            BeforeCommit: () =>
            {
                // The destination QEMU holds its uffd's registration; its socket is still there.
                outsider = Said(Attacker(destination, attacker, attacker, [], "send", shimSocket, "uffd"));
                outsiderRebind = Said(Attacker(destination, attacker, attacker, [], "rebind", shimSocket, "100"));
                groupRebind = Said(Attacker(destination, qemuUser, qemuGroup, [qemuGroup], "rebind", shimSocket, "100"));
                return Task.CompletedTask;
            });
        var migration = new GuideCopyMigration(plan);
        var report = await migration.RunAsync(CancellationToken.None);
        string inGroupSaid = Said(inGroup), asQemuSaid = Said(asQemu);

        Assert.That(report.Outcome, Is.EqualTo(MigrationOutcome.Completed), report.Error);
        Assert.Multiple(() =>
        {
            // Kept out by the directory's mode: they never reach the socket.
            Assert.That(outsider, Does.Contain("CONNECT-FAILED Permission denied"));
            Assert.That(outsiderRebind, Does.Contain("UNLINK-FAILED Permission denied").And.Contain("BIND-FAILED Permission denied"));
            Assert.That(groupRebind, Does.Contain("UNLINK-FAILED Operation not permitted").And.Contain("BIND-FAILED Address already in use"));
            // Reached the socket first, sent a uffd of their own, were closed without an ack.
            Assert.That(inGroupSaid, Does.Contain("SENT").And.Contain("CLOSED").And.Not.Contain("ACKED"));
            Assert.That(asQemuSaid, Does.Contain("SENT").And.Contain("CLOSED").And.Not.Contain("ACKED"));
        });
        string agentLog = File.ReadAllText(Path.Combine(_lab.Layout.HostDir(destination.Name), "agent.log"));
        Assert.That(agentLog, Does.Match($@"{migration.Id}: refused a shim: pid \d+ uid \d+ gid \d+: uid \d+ is not the QEMU of {Domain}"));
        Assert.That(agentLog, Does.Match($@"{migration.Id}: refused a shim: pid {asQemu.Id} uid {QemuUser.Resolve(options).Uid} gid \d+: (libvirt reports no QEMU pid yet for|pid \d+ is not) the QEMU of {Domain}"));
        MigrationLab.AssertOnlyOn(_lab, Domain, destination);
        MigrationLab.AssertHeartbeatsContinue(_guest);
    }
}
