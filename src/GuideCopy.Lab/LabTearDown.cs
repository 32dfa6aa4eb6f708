namespace GuideCopy.Lab;

/// <summary>
/// Takes a lab down, also one half made or left by a crashed run: its guests, every process in
/// its hosts, their cgroups and network namespaces, and its directories.
/// </summary>
internal static class LabTearDown
{
    /// <summary>
    /// Tears the lab down. <paramref name="hosts"/> are the hosts its state file names (null when
    /// it has none); the rest is found by name. Returns false when there was nothing to tear down.
    /// </summary>
    public static bool Run(LabLayout layout, IReadOnlyList<LabHost>? hosts, Action<string> log)
    {
        bool found = false;
        if (hosts is not null)
        {
            found = true;
            RemoveDomains(hosts, log);
        }

        // Every process left in a host's namespaces (libvirtd, virtlogd, QEMU, agents, holder).
        foreach (var h in LabLayout.HostNames)
        {
            found |= TearDownHost(layout, hosts?.FirstOrDefault(x => x.Name == h), h, log);
        }

        // Before the state directory goes: it holds what the lab added to the huge page pool.
        LabHugePages.Release(layout);
        found |= RemoveDirectories(layout);
        return found;
    }

    private static void RemoveDomains(IReadOnlyList<LabHost> hosts, Action<string> log)
    {
        foreach (var host in hosts.Where(h => h.IsAlive))
        {
            // Destroy guests through libvirt first so QEMU exits the way libvirt expects.
            foreach (var dom in host.DomainNames())
            {
                CommandRunner.Run("virsh", "-c", host.LibvirtUri, "destroy", dom);
                CommandRunner.Run("virsh", "-c", host.LibvirtUri, "undefine", dom, "--nvram");
                log($"host {host.Name}: removed domain {dom}");
            }
        }
    }

    /// <summary>Stops the host's processes, removes its cgroups and network namespace; false when none was there.</summary>
    private static bool TearDownHost(LabLayout layout, LabHost? host, string h, Action<string> log)
    {
        bool found = false;
        var pidsInHost = new HashSet<int>();
        string netns = layout.Netns(h);
        if (File.Exists($"/run/netns/{netns}"))
        {
            found = true;
            pidsInHost.UnionWith(NetnsPids(netns));
        }

        if (host is not null && host.IsAlive)
        {
            pidsInHost.UnionWith(MountNamespacePids(host));
        }

        var cgroups = LabCpus.CgroupCandidates(layout.CgroupName(h)).Where(Directory.Exists).ToList();
        foreach (var cg in cgroups)
        {
            pidsInHost.UnionWith(LabCpus.Processes(cg));
        }

        if (pidsInHost.Count > 0)
        {
            found = true;
            ProcessReaper.Stop(pidsInHost);
            log($"host {h}: stopped {pidsInHost.Count} processes");
        }

        foreach (var cg in cgroups)
        {
            found = true;
            LabCpus.Remove(cg);
        }

        if (File.Exists($"/run/netns/{netns}"))
        {
            CommandRunner.Run("ip", "netns", "del", netns);
            log($"host {h}: network namespace {netns} removed");
        }

        return found;
    }

    /// <summary>The processes in the network namespace (ip netns pids).</summary>
    private static List<int> NetnsPids(string netns)
    {
        var pids = new List<int>();
        var r = CommandRunner.Run("ip", "netns", "pids", netns);
        foreach (var tok in r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (int.TryParse(tok.Trim(), out int pid))
            {
                pids.Add(pid);
            }
        }

        return pids;
    }

    /// <summary>The processes in the holder's mount namespace, by their /proc/PID/ns/mnt link.</summary>
    private static List<int> MountNamespacePids(LabHost host)
    {
        var pids = new List<int>();
        string mntNs = ReadLink($"/proc/{host.HolderPid}/ns/mnt");
        foreach (var procDir in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(procDir), out int pid) && ReadLink($"{procDir}/ns/mnt") == mntNs)
            {
                pids.Add(pid);
            }
        }

        return pids;
    }

    private static bool RemoveDirectories(LabLayout layout)
    {
        bool found = false;
        if (Directory.Exists(layout.DataDir))
        {
            found = true;
            Directory.Delete(layout.DataDir, recursive: true);
        }

        if (Directory.Exists(layout.StateDir))
        {
            found = true;
            Directory.Delete(layout.StateDir, recursive: true);
        }

        return found;
    }

    private static string ReadLink(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget ?? "";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }
}
