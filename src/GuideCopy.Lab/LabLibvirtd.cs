namespace GuideCopy.Lab;

/// <summary>
/// A lab host's libvirtd: its private configuration (own identity, listening on the link, RAM
/// on tmpfs), and the wait until it answers once its holder (<see cref="LabHolder"/>) started it.
/// </summary>
internal static class LabLibvirtd
{
    /// <summary>A private copy of /etc/libvirt for the host, with its own identity and RAM dir.</summary>
    public static void PrepareConfig(LabLayout layout, string host, string uuid, string ramDir)
    {
        string dir = layout.HostDir(host);
        foreach (var sub in new[] { "run", "lib", "cache", "log", "agent" })
        {
            Directory.CreateDirectory(Path.Combine(dir, sub));
        }

        CommandRunner.Check("cp", "-a", "/etc/libvirt", Path.Combine(dir, "etc"));
        // No libvirt networks: lab guests have no NIC to the outside.
        CommandRunner.Run("sh", "-c", $"rm -f '{dir}/etc/qemu/networks/autostart/'*");

        SetConfig(Path.Combine(dir, "etc", "libvirtd.conf"), new()
        {
            // libvirt refuses to migrate to a daemon with its own host UUID.
            ["host_uuid"] = $"\"{uuid}\"",
            // The peer host reaches this one over the link (qemu+tcp), as between real hosts.
            ["listen_tcp"] = "1",
            ["listen_tls"] = "0",
            ["auth_tcp"] = "\"none\"",
            ["listen_addr"] = $"\"{layout.Address(host)}\"",
        });
        SetConfig(Path.Combine(dir, "etc", "qemu.conf"), new()
        {
            // Guest RAM as a shared named file on tmpfs (or hugetlbfs: 2 MiB pages from the machine's
            // pool, LabHugePages): what uffd MISSING mode and x-ignore-shared need.
            ["memory_backing_dir"] = $"\"{ramDir}\"",
            // Native migrations (the baselines) go over the lab link, not loopback.
            ["migration_host"] = $"\"{layout.Address(host)}\"",
            // Both daemons share the machine's cgroup v1 tree; libvirt would name cgroups alike.
            ["cgroup_controllers"] = "[ ]",
        });
    }

    private static void SetConfig(string file, Dictionary<string, string> settings)
    {
        var lines = File.ReadAllLines(file)
            .Where(l => !settings.Keys.Any(k => l.TrimStart().StartsWith(k + " ", StringComparison.Ordinal)
                                                || l.TrimStart().StartsWith(k + "=", StringComparison.Ordinal)))
            .ToList();
        lines.Add("# set by guidecopy lab");
        lines.AddRange(settings.Select(kv => $"{kv.Key} = {kv.Value}"));
        File.WriteAllLines(file, lines);
    }

    /// <summary>Waits until the host's libvirtd answers on its socket; throws, pointing at its log, when it does not.</summary>
    public static void WaitForLibvirt(LabHost host)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        CommandResult? last = null;
        while (DateTime.UtcNow < deadline)
        {
            last = CommandRunner.Run("virsh", "-c", host.LibvirtUri, "uri");
            if (last.Succeeded)
            {
                return;
            }

            Thread.Sleep(200);
        }

        throw new LabException($"host {host.Name}: libvirtd does not answer at {host.LibvirtUri}: {last?.StdErr.Trim()}; " +
                               $"its log is {host.Layout.HostDir(host.Name)}/log/libvirtd.log");
    }

    /// <summary>Has each host's libvirtd probe QEMU's capabilities (virsh domcapabilities), all hosts side by side.</summary>
    public static void ProbeCapabilities(IReadOnlyList<LabHost> hosts) =>
        Parallel.ForEach(hosts, host =>
            CommandRunner.Run("virsh", "-c", host.LibvirtUri, "domcapabilities", "--virttype", "qemu", "--arch", "x86_64"));
}
