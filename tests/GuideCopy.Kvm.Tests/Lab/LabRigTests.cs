using GuideCopy.Lab;

namespace GuideCopy.Kvm.Tests.Lab;

/// <summary>
/// The lab's own lifecycle through the CLI: up, bad input, down, and nothing left behind.
/// Uses its own lab name so it never touches a lab an operator has up.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class LabRigTests
{
    private const string Name = "gclife";

    [OneTimeSetUp]
    public void CleanStart() => LabRig.Down(Name);

    [OneTimeTearDown]
    public void CleanEnd() => LabRig.Down(Name);

    [Test]
    public void UpTwiceDownTwiceLeavesNothing()
    {
        var up = CliProcess.Run("lab", "up", "--name", Name, "--rate", "200mbit");
        Assert.That(up.ExitCode, Is.EqualTo(0), up.StdErr);
        var lab = LabRig.Attach(Name);
        int[] holders = [lab.A.HolderPid, lab.B.HolderPid];

        // Both daemons answer, with different host UUIDs (libvirt refuses to migrate otherwise).
        Assert.That(lab.A.State.HostUuid, Is.Not.EqualTo(lab.B.State.HostUuid));
        string capsB = CommandRunner.Check("virsh", "-c", lab.B.LibvirtUri, "capabilities");
        Assert.That(capsB, Does.Contain(lab.B.State.HostUuid));

        // The link works host to host: A reaches B's libvirtd over it as a peer would.
        string peerCaps = lab.A.Check("virsh", "-c", lab.B.PeerLibvirtUri, "capabilities");
        Assert.That(peerCaps, Does.Contain(lab.B.State.HostUuid));
        Assert.That(lab.A.Check("tc", "qdisc", "show", "dev", lab.A.State.Interface), Does.Contain("tbf"));

        // Each host has its own /dev/shm: a file made on A is not on B or on the machine.
        lab.A.Check("touch", "/dev/shm/only-on-a");
        Assert.That(lab.B.Run("test", "-e", "/dev/shm/only-on-a").ExitCode, Is.Not.EqualTo(0));
        Assert.That(File.Exists("/dev/shm/only-on-a"), Is.False);

        // Each host runs on its own CPUs, like two machines: its libvirtd, and the agent (which
        // the lab starts from outside the host's namespaces), may use only the host's share.
        Assert.That(lab.A.State.Cpus, Is.Not.Null.And.Not.EqualTo(lab.B.State.Cpus), "a 2-CPU machine splits its CPUs");
        foreach (var h in lab.Hosts)
        {
            var pids = File.ReadAllLines(Path.Combine(h.State.Cgroup!, "cgroup.procs")).Select(int.Parse).ToList();
            Assert.That(pids, Does.Contain(h.HolderPid));
            foreach (var pid in pids)
            {
                Assert.That(AllowedCpus(pid), Is.EqualTo(LabCpus.ParseList(h.State.Cpus!)), $"pid {pid} of host {h.Name}");
            }

            Assert.That(pids.Select(Comm), Does.Contain("libvirtd"));
        }

        var again = CliProcess.Run("lab", "up", "--name", Name);
        Assert.That(again.ExitCode, Is.EqualTo(1));
        Assert.That(again.StdErr, Does.Contain($"lab '{Name}' is already up"));
        Assert.That(LabRig.Attach(Name).A.IsAlive, Is.True, "a refused second 'up' must not harm the running lab");

        var status = CliProcess.Run("lab", "status", "--name", Name, "--json");
        Assert.That(status.ExitCode, Is.EqualTo(0));
        Assert.That(status.StdOut, Does.Contain(lab.A.Address).And.Contain("200mbit"));

        var down = CliProcess.Run("lab", "down", "--name", Name);
        Assert.That(down.ExitCode, Is.EqualTo(0), down.StdErr);
        Assert.That(down.StdOut, Does.Contain("is down"));

        AssertNothingLeft(holders);

        var downAgain = CliProcess.Run("lab", "down", "--name", Name);
        Assert.That(downAgain.ExitCode, Is.EqualTo(0));
        Assert.That(downAgain.StdOut, Does.Contain("not up; nothing to tear down"));
    }

    [Test]
    public void MissingToolIsNamedWithItsPackageAndNothingIsMade()
    {
        // A PATH where every tool but libvirtd is found, as on a host without libvirt-daemon-system.
        string bin = Directory.CreateTempSubdirectory("gc-path").FullName;
        try
        {
            foreach (var tool in new[] { "ip", "tc", "virtlogd" })
            {
                File.CreateSymbolicLink(Path.Combine(bin, tool), CommandRunner.Which(tool)!);
            }

            var r = CliProcess.Run(new Dictionary<string, string> { ["PATH"] = $"{bin}:/usr/bin:/bin" }, "lab", "up", "--name", Name);
            Assert.That(r.ExitCode, Is.EqualTo(1));
            Assert.That(r.StdErr, Does.Contain("'libvirtd' (package libvirt-daemon-system)").And.Contain("scripts/setup"));
            AssertNothingLeft([]);
        }
        finally
        {
            Directory.Delete(bin, recursive: true);
        }
    }

    [Test]
    public void BadLabNameAndRateAreRefused()
    {
        var r = CliProcess.Run("lab", "up", "--name", "Bad_Name!");
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.StdErr, Does.Contain("lab name 'Bad_Name!' is not valid"));

        r = CliProcess.Run("lab", "up", "--name", Name, "--rate", "fast");
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.StdErr, Does.Contain("link rate 'fast' is not a tc rate"));
        AssertNothingLeft([]);
    }

    private static IReadOnlyList<int> AllowedCpus(int pid) =>
        LabCpus.ParseList(File.ReadAllLines($"/proc/{pid}/status").Single(l => l.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal)).Split(':')[1]);

    private static string Comm(int pid) => File.ReadAllText($"/proc/{pid}/comm").Trim();

    private static void AssertNothingLeft(int[] holders)
    {
        Assert.That(Directory.GetDirectories("/sys/fs/cgroup/cpuset").Where(d => d.Contains($"guidecopy-lab-{Name}-")), Is.Empty, "cpuset cgroups left");
        string netns = CommandRunner.Check("ip", "netns", "list");
        Assert.That(netns, Does.Not.Contain($"{Name}-a").And.Not.Contain($"{Name}-b"), "network namespaces left");
        foreach (var pid in holders)
        {
            Assert.That(Directory.Exists($"/proc/{pid}"), Is.False, $"holder {pid} still running");
        }

        Assert.That(File.ReadAllText("/proc/self/mountinfo"), Does.Not.Contain($"guidecopy-lab/{Name}"), "mounts left");
        Assert.That(Directory.Exists($"/var/lib/guidecopy-lab/{Name}"), Is.False, "files left");
        Assert.That(Directory.Exists($"/run/guidecopy-lab/{Name}"), Is.False, "state left");
        var ps = CommandRunner.Run("pgrep", "-af", $"guidecopy-lab/{Name}");
        Assert.That(ps.StdOut.Trim(), Is.Empty, "processes left");
    }
}
