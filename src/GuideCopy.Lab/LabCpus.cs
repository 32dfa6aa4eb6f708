namespace GuideCopy.Lab;

/// <summary>
/// Gives each lab host its own CPUs through a cpuset cgroup, as two real hosts would have:
/// without it the guide's QEMU (on host a) and the destination VM (on host b) take turns on
/// the same cores and the lab measures a contention no real pair of hosts has.
/// <para>
/// The holder joins the cgroup before it starts libvirtd, so libvirtd, virtlogd, every QEMU and
/// the agent inherit it (fork keeps the cgroup). libvirt resets each QEMU's affinity to all
/// online CPUs (qemuProcessInitCpuAffinity, "we can't assume libvirtd itself is running on all
/// pCPUs"); the kernel intersects a sched_setaffinity mask with the task's cpuset
/// (__sched_setaffinity -> cpuset_cpus_allowed), so QEMU still runs only on the host's CPUs.
/// The lab's libvirtds run with <c>cgroup_controllers = [ ]</c>, so libvirt never moves QEMU
/// out of this cgroup.
/// </para>
/// </summary>
public static class LabCpus
{
    private const string V1Root = "/sys/fs/cgroup/cpuset";
    private const string V2Root = "/sys/fs/cgroup";

    /// <summary>The machine's online CPUs, e.g. [0, 1].</summary>
    public static IReadOnlyList<int> Online() => ParseList(File.ReadAllText("/sys/devices/system/cpu/online").Trim());

    /// <summary>Host a gets the first half of the online CPUs, host b the rest; null when there are fewer than 2.</summary>
    public static IReadOnlyList<string>? Split(IReadOnlyList<int> online)
    {
        if (online.Count < 2)
        {
            return null;
        }

        int half = online.Count / 2;
        return [FormatList(online.Take(half)), FormatList(online.Skip(half))];
    }

    /// <summary>Where cpuset cgroups can be made here (v1 hierarchy or v2 with the cpuset controller), or null.</summary>
    public static string? Root()
    {
        if (File.Exists(Path.Combine(V1Root, "cpuset.cpus")))
        {
            return V1Root;
        }

        string controllers = Path.Combine(V2Root, "cgroup.controllers");
        return File.Exists(controllers) && File.ReadAllText(controllers).Split(' ', '\n').Contains("cpuset") ? V2Root : null;
    }

    /// <summary>Creates the cgroup for one host, restricted to <paramref name="cpus"/>; returns its directory.</summary>
    public static string Create(string root, string name, string cpus)
    {
        string dir = Path.Combine(root, name);
        if (root == V2Root)
        {
            // v2: the cpuset controller must be enabled for the children of the root.
            File.AppendAllText(Path.Combine(V2Root, "cgroup.subtree_control"), "+cpuset");
        }

        Directory.CreateDirectory(dir);
        if (root == V1Root)
        {
            // v1: a cpuset with empty mems accepts no task; take the parent's memory nodes.
            File.WriteAllText(Path.Combine(dir, "cpuset.mems"), File.ReadAllText(Path.Combine(root, "cpuset.mems")).Trim());
        }

        File.WriteAllText(Path.Combine(dir, "cpuset.cpus"), cpus);
        return dir;
    }

    /// <summary>Where a host's cgroup would be, also for a lab whose state file is gone.</summary>
    internal static IEnumerable<string> CgroupCandidates(string name) =>
        new[] { V1Root, V2Root }.Select(r => Path.Combine(r, name));

    /// <summary>The processes still in a host's cgroup (teardown stops them all).</summary>
    public static IEnumerable<int> Processes(string dir)
    {
        string procs = Path.Combine(dir, "cgroup.procs");
        if (!File.Exists(procs))
        {
            return [];
        }

        try
        {
            return File.ReadAllLines(procs).Select(l => int.TryParse(l, out int p) ? p : 0).Where(p => p > 0).ToList();
        }
        catch (IOException)
        {
            return [];
        }
    }

    /// <summary>Removes an emptied cgroup; rmdir fails with EBUSY while a task is still being reaped, so retry briefly.</summary>
    public static void Remove(string dir)
    {
        for (int i = 0; i < 50 && Directory.Exists(dir); i++)
        {
            try
            {
                Directory.Delete(dir); // rmdir(2); the control files are not real files
                return;
            }
            catch (IOException)
            {
                Thread.Sleep(100);
            }
        }
    }

    /// <summary>
    /// Receive processing of a host's end of the lab link on that host's CPUs (RPS), as a NIC's
    /// interrupts would be. A veth hands a packet to the peer with netif_rx on the sending CPU, so
    /// without this the source host's CPU runs the destination's TCP receive of everything it
    /// pushes (and, past softirq's budget, in ksoftirqd at normal priority beside the guide),
    /// and the other way round. With rps_cpus set, netif_rx queues the packet to the backlog of
    /// a CPU in the mask (get_rps_cpu) and the receiving host pays for its own traffic.
    /// </summary>
    public static void SteerReceive(string netns, string iface, string cpus)
    {
        // Inside the namespace: ip netns exec mounts a /sys that shows the namespace's devices.
        CommandRunner.Check("ip", "netns", "exec", netns, "sh", "-c",
            $"echo {CpuMask(ParseList(cpus))} > /sys/class/net/{iface}/queues/rx-0/rps_cpus");
    }

    /// <summary>
    /// A CPU set in the kernel's bitmap format (lib/bitmap-str.c, what rps_cpus reads): hex
    /// words of 32 bits, most significant first, separated by commas ("1,00000000" is CPU 32),
    /// so any CPU number fits, not only those below 64.
    /// </summary>
    public static string CpuMask(IEnumerable<int> cpus)
    {
        var set = cpus.ToList();
        if (set.Count == 0) return "0";
        var words = new uint[set.Max() / 32 + 1];
        foreach (int c in set)
        {
            words[c / 32] |= 1u << (c % 32);
        }

        var sb = new System.Text.StringBuilder();
        sb.Append(words[^1].ToString("x", System.Globalization.CultureInfo.InvariantCulture));
        for (int w = words.Length - 2; w >= 0; w--)
        {
            sb.Append(',').Append(words[w].ToString("x8", System.Globalization.CultureInfo.InvariantCulture));
        }

        return sb.ToString();
    }

    public static IReadOnlyList<int> ParseList(string text)
    {
        var cpus = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var ends = part.Split('-');
            int lo = int.Parse(ends[0], System.Globalization.CultureInfo.InvariantCulture);
            int hi = ends.Length > 1 ? int.Parse(ends[1], System.Globalization.CultureInfo.InvariantCulture) : lo;
            for (int c = lo; c <= hi; c++)
            {
                cpus.Add(c);
            }
        }

        return cpus;
    }

    private static string FormatList(IEnumerable<int> cpus) => string.Join(',', cpus);
}
