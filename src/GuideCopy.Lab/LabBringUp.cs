using System.Text.Json;

namespace GuideCopy.Lab;

/// <summary>
/// Makes a lab: its directories, its network, and each host (libvirt configuration, cgroup,
/// holder with libvirtd), then writes the state file that says the lab is up.
/// </summary>
internal static class LabBringUp
{
    /// <summary>Makes the lab and writes its state file; the hosts' libvirtds may not answer yet.</summary>
    public static LabState StartHosts(LabLayout layout, string? linkRate, Action<string> log, bool sharedCpus, bool hugePages)
    {
        PrepareDirectories(layout);
        LabNetwork.Create(layout, log);

        var cpuSplit = sharedCpus ? null : LabCpus.Split(LabCpus.Online());
        string? cgroupRoot = cpuSplit is null ? null : LabCpus.Root();
        if (cpuSplit is not null && cgroupRoot is null)
        {
            log("cpus: no cpuset cgroup here; the hosts share the machine's CPUs");
        }

        var hosts = new List<LabHostState>();
        for (int i = 0; i < LabLayout.HostNames.Length; i++)
        {
            string? cpus = cgroupRoot is null ? null : cpuSplit![i];
            hosts.Add(StartHost(layout, LabLayout.HostNames[i], cgroupRoot, cpus, hugePages, log));
        }

        var state = new LabState(layout.Name, layout.SubnetIndex, linkRate, DateTimeOffset.UtcNow, hosts);
        File.WriteAllText(layout.StateFile, JsonSerializer.Serialize(state, LabState.Json));
        return state;
    }

    private static void PrepareDirectories(LabLayout layout)
    {
        Directory.CreateDirectory(layout.StateDir);
        Directory.CreateDirectory(layout.SharedDir);
        // QEMU runs as libvirt-qemu: it must reach images and write consoles in the shared dir.
        foreach (var dir in new[] { "/var/lib/guidecopy-lab", layout.DataDir })
        {
            File.SetUnixFileMode(dir, (UnixFileMode)0b111_101_101);
        }

        File.SetUnixFileMode(layout.SharedDir, (UnixFileMode)0b111_111_111 | UnixFileMode.StickyBit);
    }

    /// <summary>One host: its libvirt configuration, its cgroup on <paramref name="cpus"/> (null: shared CPUs), its holder.</summary>
    private static LabHostState StartHost(LabLayout layout, string h, string? cgroupRoot, string? cpus, bool hugePages, Action<string> log)
    {
        var uuid = Guid.NewGuid().ToString();
        LabLibvirtd.PrepareConfig(layout, h, uuid, hugePages ? LabHost.HugePageDir : LabHost.TmpfsRamDir);
        string? cgroup = cpus is null ? null : LabCpus.Create(cgroupRoot!, layout.CgroupName(h), cpus);
        if (cpus is not null)
        {
            LabCpus.SteerReceive(layout.Netns(h), layout.Interface(h), cpus);
        }

        int pid = LabHolder.Start(layout, h, cgroup);
        log($"host {h}: libvirtd up (holder pid {pid}, host_uuid {uuid}, address {layout.Address(h)}, cpus {cpus ?? "shared"})");
        return new LabHostState(h, layout.Netns(h), layout.Interface(h), layout.Address(h), uuid, pid, cpus, cgroup, hugePages);
    }
}
