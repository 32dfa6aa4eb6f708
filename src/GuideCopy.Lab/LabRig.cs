using System.Text.Json;

namespace GuideCopy.Lab;

/// <summary>
/// The local two-host lab: hosts "a" and "b", each a libvirtd (own host_uuid) in its own
/// mount and network namespace, joined by a veth pair with an optional tc tbf rate cap.
/// </summary>
public sealed class LabRig
{
    private static readonly string[] HostNames = ["a", "b"];

    private static readonly (string Tool, string Package)[] RequiredTools =
    [
        ("ip", "iproute2"), ("tc", "iproute2"), ("unshare", "util-linux"), ("nsenter", "util-linux"),
        ("libvirtd", "libvirt-daemon-system"), ("virtlogd", "libvirt-daemon-system"),
        ("virsh", "libvirt-clients"), ("qemu-system-x86_64", "qemu-system-x86"),
    ];

    private LabRig(LabLayout layout, LabState state)
    {
        Layout = layout;
        State = state;
        A = new LabHost(layout, state.Hosts[0]);
        B = new LabHost(layout, state.Hosts[1]);
    }

    public LabLayout Layout { get; }

    public LabState State { get; }

    public LabHost A { get; }

    public LabHost B { get; }

    public IReadOnlyList<LabHost> Hosts => [A, B];

    public string SharedDir => Layout.SharedDir;

    /// <summary>The lab name from GUIDECOPY_LAB, else the default.</summary>
    public static string NameFromEnvironment() =>
        Environment.GetEnvironmentVariable("GUIDECOPY_LAB") is { Length: > 0 } n ? n : LabLayout.DefaultName;

    /// <summary>The running lab of that name, or null when it is not up.</summary>
    public static LabRig? TryAttach(string name)
    {
        var layout = new LabLayout(name);
        if (!File.Exists(layout.StateFile))
        {
            return null;
        }

        var state = JsonSerializer.Deserialize<LabState>(File.ReadAllText(layout.StateFile), LabState.Json)
            ?? throw new LabException($"lab state file {layout.StateFile} is unreadable; run 'guidecopy lab down --name {name}'");
        return new LabRig(layout, state);
    }

    /// <summary>The running lab of that name, or an error saying how to start it.</summary>
    public static LabRig Attach(string name) =>
        TryAttach(name) ?? throw new LabException($"lab '{name}' is not up; start it with 'guidecopy lab up --name {name}'");

    /// <summary>
    /// For test fixtures: the running lab of that name, or a new one. <paramref name="created"/>
    /// tells the fixture whether it owns the lab (and so must take it down).
    /// </summary>
    public static LabRig EnsureUp(string name, out bool created, string? linkRate = null)
    {
        if (TryAttach(name) is { } lab && lab.Hosts.All(h => h.IsAlive))
        {
            created = false;
            return lab;
        }

        Down(name);
        created = true;
        return Up(name, linkRate);
    }

    /// <summary>
    /// Brings the lab up. Fails (leaving nothing behind) if it is already up or a tool is missing.
    /// Each host gets half of the machine's CPUs (<see cref="LabCpus"/>) unless <paramref name="sharedCpus"/>.
    /// </summary>
    public static LabRig Up(string name, string? linkRate = null, Action<string>? log = null, bool sharedCpus = false)
    {
        log ??= _ => { };
        var layout = new LabLayout(name);
        if (TryAttach(name) is { } running)
        {
            throw new LabException(
                $"lab '{name}' is already up (hosts a and b, since {running.State.StartedAt:u}); " +
                $"see 'guidecopy lab status --name {name}' or tear it down with 'guidecopy lab down --name {name}'");
        }

        CheckTools();
        if (linkRate is not null)
        {
            ValidateRate(linkRate);
        }

        if (Directory.Exists($"/run/netns/{layout.Netns("a")}") || File.Exists($"/run/netns/{layout.Netns("a")}"))
        {
            throw new LabException(
                $"network namespace {layout.Netns("a")} exists but lab '{name}' has no state: a crashed run left it; " +
                $"'guidecopy lab down --name {name}' removes it");
        }

        try
        {
            return BringUp(layout, linkRate, log, sharedCpus);
        }
        catch (Exception e)
        {
            log($"bring-up failed, removing what was made: {e.Message}");
            TearDown(layout, log);
            throw e as LabException ?? new LabException($"lab '{name}' could not start: {e.Message}", e);
        }
    }

    private static LabRig BringUp(LabLayout layout, string? linkRate, Action<string> log, bool sharedCpus)
    {
        Directory.CreateDirectory(layout.StateDir);
        Directory.CreateDirectory(layout.SharedDir);
        // QEMU runs as libvirt-qemu: it must reach images and write consoles in the shared dir.
        foreach (var dir in new[] { "/var/lib/guidecopy-lab", layout.DataDir })
        {
            File.SetUnixFileMode(dir, (UnixFileMode)0b111_101_101);
        }

        File.SetUnixFileMode(layout.SharedDir, (UnixFileMode)0b111_111_111 | UnixFileMode.StickyBit);

        log($"network: namespaces {layout.Netns("a")}, {layout.Netns("b")}; veth {layout.Interface("a")} <-> {layout.Interface("b")}");
        foreach (var h in HostNames)
        {
            CommandRunner.Check("ip", "netns", "add", layout.Netns(h));
            CommandRunner.Check("ip", "-n", layout.Netns(h), "link", "set", "lo", "up");
        }

        CommandRunner.Check("ip", "link", "add", layout.Interface("a"), "netns", layout.Netns("a"),
            "type", "veth", "peer", "name", layout.Interface("b"), "netns", layout.Netns("b"));
        foreach (var h in HostNames)
        {
            CommandRunner.Check("ip", "-n", layout.Netns(h), "addr", "add", layout.Address(h) + "/24", "dev", layout.Interface(h));
            CommandRunner.Check("ip", "-n", layout.Netns(h), "link", "set", layout.Interface(h), "up");
        }

        var cpuSplit = sharedCpus ? null : LabCpus.Split(LabCpus.Online());
        string? cgroupRoot = cpuSplit is null ? null : LabCpus.Root();
        if (cpuSplit is not null && cgroupRoot is null)
        {
            log("cpus: no cpuset cgroup here; the hosts share the machine's CPUs");
        }

        var hosts = new List<LabHostState>();
        for (int i = 0; i < HostNames.Length; i++)
        {
            string h = HostNames[i];
            var uuid = Guid.NewGuid().ToString();
            PrepareHostConfig(layout, h, uuid);
            string? cpus = cgroupRoot is null ? null : cpuSplit![i];
            string? cgroup = cpus is null ? null : LabCpus.Create(cgroupRoot!, CgroupName(layout, h), cpus);
            if (cpus is not null)
            {
                LabCpus.SteerReceive(layout.Netns(h), layout.Interface(h), cpus);
            }

            int pid = StartHolder(layout, h, cgroup);
            hosts.Add(new LabHostState(h, layout.Netns(h), layout.Interface(h), layout.Address(h), uuid, pid, cpus, cgroup));
            log($"host {h}: libvirtd up (holder pid {pid}, host_uuid {uuid}, address {layout.Address(h)}, cpus {cpus ?? "shared"})");
        }

        var state = new LabState(layout.Name, layout.SubnetIndex, linkRate, DateTimeOffset.UtcNow, hosts);
        File.WriteAllText(layout.StateFile, JsonSerializer.Serialize(state, LabState.Json));
        var lab = new LabRig(layout, state);
        foreach (var host in lab.Hosts)
        {
            WaitForLibvirt(host);
        }

        // A fresh libvirtd probes QEMU's capabilities (starts a QEMU, asks it over QMP) the first
        // time it starts a domain: 3-4 s here under TCG, which a real host paid at boot and a lab
        // would bill to the first migration's destination start. Both hosts, side by side, now.
        Parallel.ForEach(lab.Hosts, host =>
            CommandRunner.Run("virsh", "-c", host.LibvirtUri, "domcapabilities", "--virttype", "qemu", "--arch", "x86_64"));
        log("libvirt: QEMU capabilities probed on both hosts");

        if (linkRate is not null)
        {
            lab.SetLinkRate(linkRate);
            log($"link capped at {linkRate} (tc tbf on both ends)");
        }

        return lab;
    }

    /// <summary>A private copy of /etc/libvirt for the host, with its own identity and RAM dir.</summary>
    private static void PrepareHostConfig(LabLayout layout, string host, string uuid)
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
            // Guest RAM as a shared named file on tmpfs: what uffd MISSING mode and x-ignore-shared need.
            ["memory_backing_dir"] = $"\"{LabHost.RamDir}\"",
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

    /// <summary>
    /// Starts the host's holder: enters the netns, unshares a private mount namespace, binds the
    /// host's private directories over libvirt's, mounts its own /dev/shm tmpfs, starts virtlogd
    /// and libvirtd, then sleeps. Its pid names the namespaces for nsenter and for teardown.
    /// </summary>
    private static int StartHolder(LabLayout layout, string host, string? cgroup)
    {
        string dir = layout.HostDir(host);
        foreach (var target in new[] { "/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt", "/run/guidecopy" })
        {
            Directory.CreateDirectory(target);
        }

        string pidFile = Path.Combine(dir, "holder.pid");
        string script = $$"""
            set -e
            mount --bind '{{dir}}/etc' /etc/libvirt
            mount --bind '{{dir}}/run' /run/libvirt
            mount --bind '{{dir}}/lib' /var/lib/libvirt
            mount --bind '{{dir}}/cache' /var/cache/libvirt
            mount --bind '{{dir}}/log' /var/log/libvirt
            mount --bind '{{dir}}/agent' /run/guidecopy
            mount -t tmpfs -o size=12g,mode=1777 guidecopy-lab-shm /dev/shm
            mkdir -p {{LabHost.RamDir}}
            virtlogd -d -p /run/libvirt/virtlogd.pid
            libvirtd -d --listen -p /run/libvirt/libvirtd.pid
            echo $$ > '{{pidFile}}'
            exec sleep infinity
            """;
        File.Delete(pidFile);
        string log = Path.Combine(dir, "holder.log");
        // The shell joins the host's cpuset first, so the holder and all it starts inherit it
        // (here: inside, 'ip netns exec' mounts a fresh /sys without the cgroup tree).
        // setsid: the holder outlives this command and ignores the terminal's signals.
        string joinCgroup = cgroup is null ? "" : $"echo $$ > '{cgroup}/cgroup.procs'; ";
        CommandRunner.Check("sh", "-c",
            $"{joinCgroup}setsid ip netns exec {layout.Netns(host)} unshare -m --propagation private -- sh -c \"$0\" >'{log}' 2>&1 </dev/null &",
            script);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            if (File.Exists(pidFile) && int.TryParse(File.ReadAllText(pidFile).Trim(), out int pid))
            {
                return pid;
            }

            Thread.Sleep(100);
        }

        throw new LabException($"host {host}: libvirtd did not start within 30 s; see {log}: {ReadTail(log)}");
    }

    private static void WaitForLibvirt(LabHost host)
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

    /// <summary>The shared secret both lab hosts' agents and the controller use (made at lab up).</summary>
    public string SecretFile => Path.Combine(Layout.DataDir, "secret");

    /// <summary>The shim as the lab hosts' QEMU loads it (a copy in the shared directory, readable by libvirt-qemu).</summary>
    public string ShimLibrary => Path.Combine(SharedDir, "lib", "libguidecopy-shim.so");

    /// <summary>
    /// Starts a guidecopy agent inside each host, as systemd would on a real host.
    /// <paramref name="agentCommand"/> is how to run this build's CLI (e.g. dotnet guidecopy.dll).
    /// </summary>
    public void StartAgents(IReadOnlyList<string> agentCommand, string shimBuildPath, Action<string>? log = null)
    {
        if (!File.Exists(shimBuildPath))
        {
            throw new LabException($"the QEMU shim {shimBuildPath} is missing: build it with 'make -C native' (or run scripts/setup)");
        }

        Directory.CreateDirectory(Path.GetDirectoryName(ShimLibrary)!);
        File.Copy(shimBuildPath, ShimLibrary, overwrite: true);
        File.SetUnixFileMode(ShimLibrary, (UnixFileMode)0b111_101_101);
        if (!File.Exists(SecretFile))
        {
            File.WriteAllText(SecretFile, Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)) + "\n");
            File.SetUnixFileMode(SecretFile, (UnixFileMode)0b110_000_000);
        }

        foreach (var h in Hosts)
        {
            StartAgent(h, agentCommand, log);
        }
    }

    /// <summary>Starts (or, after it was stopped, restarts) one host's agent.</summary>
    public void StartAgent(LabHost h, IReadOnlyList<string> agentCommand, Action<string>? log = null) => StartAgent(h, agentCommand, [], log);

    /// <summary>Starts one host's agent with extra settings (Section:Key=value, e.g. fault injection for a test).</summary>
    public void StartAgent(LabHost h, IReadOnlyList<string> agentCommand, IReadOnlyList<string> settings, Action<string>? log = null)
    {
        string agentLog = Path.Combine(Layout.HostDir(h.Name), "agent.log");
        string socket = Path.Combine(Layout.HostDir(h.Name), "agent", "agent.sock");
        File.Delete(socket);
        // Its own (empty) config file: a lab host must not pick up the machine's /etc/guidecopy.
        string config = Path.Combine(Layout.HostDir(h.Name), "guidecopy.json");
        File.WriteAllText(config, "{}\n");
        var args = new List<string>(agentCommand)
        {
            "agent",
            "--config", config,
            "--set", $"Agent:SecretFile={SecretFile}",
            "--set", $"Agent:AdvertiseAddress={h.Address}",
            "--set", $"Agent:PageListen={h.Address}:7171",
            "--set", $"Agent:ShimLibrary={ShimLibrary}",
            // On the host's disk, outside the namespace's tmpfs mounts: it must outlive the agent.
            "--set", $"Agent:JournalDir={JournalDir(h)}",
        };
        foreach (string setting in settings)
        {
            args.Add("--set");
            args.Add(setting);
        }

        string quoted = string.Join(' ', args.Select(a => "'" + a.Replace("'", "'\\''") + "'"));
        // The agent runs on the host's CPUs, like everything else of the host (LabCpus).
        string joinCgroup = h.State.Cgroup is { } cg ? $"echo $$ > '{cg}/cgroup.procs'; " : "";
        CommandRunner.Check("sh", "-c",
            $"{joinCgroup}setsid nsenter -t {h.HolderPid} -m -n -- {quoted} >>'{agentLog}' 2>&1 </dev/null &");
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!File.Exists(socket))
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new LabException($"host {h.Name}: the agent did not open {socket} within 30 s; see {agentLog}: {ReadTail(agentLog)}");
            }

            Thread.Sleep(100);
        }

        log?.Invoke($"host {h.Name}: agent up (control unix:{h.AgentSocket})");
    }

    /// <summary>Takes the lab link down (a cut cable) or up again, on host a's end of the veth pair.</summary>
    public void SetLink(bool up) =>
        CommandRunner.Check("ip", "netns", "exec", Layout.Netns("a"), "ip", "link", "set", Layout.Interface("a"), up ? "up" : "down");

    /// <summary>The host's journal directory (one file per migration it took part in).</summary>
    public string JournalDir(LabHost h) => Path.Combine(Layout.HostDir(h.Name), "journal");

    /// <summary>The pid of the host's agent process, or null when none runs.</summary>
    public static int? AgentPid(LabHost h)
    {
        var r = CommandRunner.Run("pgrep", "-f", "-n", $"guidecopy.dll agent .*AdvertiseAddress={h.Address}");
        return r.Succeeded && int.TryParse(r.StdOut.Trim(), out int pid) ? pid : null;
    }

    /// <summary>Caps (or with null, uncaps) the lab link in both directions with tc tbf.</summary>
    public void SetLinkRate(string? rate)
    {
        if (rate is not null)
        {
            ValidateRate(rate);
        }

        foreach (var h in Hosts)
        {
            if (rate is null)
            {
                CommandRunner.Run("ip", "netns", "exec", h.State.Netns, "tc", "qdisc", "del", "dev", h.State.Interface, "root");
            }
            else
            {
                // The link: tbf at the rate. Its burst is also the largest packet it passes whole
                // (max_size); a bigger GSO packet it segments in software (tbf_segment). TCP's
                // GSO packets reach 64 KiB of payload plus a header per segment (~68 KB), so a
                // 64 KiB burst had every pushed packet cut into 1500-byte ones: CPU on both hosts
                // that a real host's NIC (TSO/GRO) does not spend. 256 KiB passes them whole.
                CommandRunner.Check("ip", "netns", "exec", h.State.Netns, "tc", "qdisc", "replace", "dev", h.State.Interface,
                    "root", "handle", "1:", "tbf", "rate", rate, "burst", "256kb", "latency", "100ms");
                // The host's queue in front of it: pfifo_fast, Linux's default qdisc (tbf's own
                // child would be a plain byte FIFO, which no host runs). It serves packets by
                // their priority band (TOS / SO_PRIORITY) and is FIFO within a band, so a flow
                // that marks nothing (QEMU's migration streams) sees the same FIFO as before.
                CommandRunner.Check("ip", "netns", "exec", h.State.Netns, "tc", "qdisc", "replace", "dev", h.State.Interface,
                    "parent", "1:1", "handle", "10:", "pfifo_fast");
            }
        }
    }

    private static void ValidateRate(string rate)
    {
        if (!System.Text.RegularExpressions.Regex.IsMatch(rate, @"^\d+(\.\d+)?([kmg]?bit|[kmg]?bps)$", System.Text.RegularExpressions.RegexOptions.IgnoreCase))
        {
            throw new LabException($"link rate '{rate}' is not a tc rate: use e.g. 100mbit, 12mbps or 1gbit");
        }
    }

    private static void CheckTools()
    {
        var missing = RequiredTools.Where(t => CommandRunner.Which(t.Tool) is null).ToList();
        if (missing.Count > 0)
        {
            throw new LabException(
                "missing " + string.Join(", ", missing.Select(m => $"'{m.Tool}' (package {m.Package})")) +
                "; run scripts/setup (or apt-get install " + string.Join(' ', missing.Select(m => m.Package).Distinct()) + ")");
        }
    }

    /// <summary>Tears the lab down. Returns false when there was nothing to tear down.</summary>
    public static bool Down(string name, Action<string>? log = null) => TearDown(new LabLayout(name), log ?? (_ => { }));

    private static bool TearDown(LabLayout layout, Action<string> log)
    {
        bool found = false;
        var lab = TryAttachQuiet(layout.Name);
        if (lab is not null)
        {
            found = true;
            foreach (var host in lab.Hosts.Where(h => h.IsAlive))
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

        // Every process left in a host's namespaces (libvirtd, virtlogd, QEMU, agents, holder).
        foreach (var h in HostNames)
        {
            var pidsInHost = new HashSet<int>();
            string netns = layout.Netns(h);
            if (File.Exists($"/run/netns/{netns}"))
            {
                found = true;
                var r = CommandRunner.Run("ip", "netns", "pids", netns);
                foreach (var tok in r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries))
                {
                    if (int.TryParse(tok.Trim(), out int pid))
                    {
                        pidsInHost.Add(pid);
                    }
                }
            }

            if (lab?.Hosts.FirstOrDefault(x => x.Name == h) is { } host && host.IsAlive)
            {
                string mntNs = ReadLink($"/proc/{host.HolderPid}/ns/mnt");
                foreach (var procDir in Directory.EnumerateDirectories("/proc"))
                {
                    if (int.TryParse(Path.GetFileName(procDir), out int pid) && ReadLink($"{procDir}/ns/mnt") == mntNs)
                    {
                        pidsInHost.Add(pid);
                    }
                }
            }

            var cgroups = CgroupCandidates(layout, h).Where(Directory.Exists).ToList();
            foreach (var cg in cgroups)
            {
                pidsInHost.UnionWith(LabCpus.Processes(cg));
            }

            if (pidsInHost.Count > 0)
            {
                found = true;
                StopProcesses(pidsInHost);
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
        }

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

    private static string CgroupName(LabLayout layout, string host) => $"guidecopy-lab-{layout.Name}-{host}";

    /// <summary>Where a host's cgroup would be, also for a lab whose state file is gone.</summary>
    private static IEnumerable<string> CgroupCandidates(LabLayout layout, string host) =>
        new[] { "/sys/fs/cgroup/cpuset", "/sys/fs/cgroup" }.Select(r => Path.Combine(r, CgroupName(layout, host)));

    private static LabRig? TryAttachQuiet(string name)
    {
        try
        {
            return TryAttach(name);
        }
        catch (Exception e) when (e is LabException or JsonException)
        {
            return null;
        }
    }

    /// <summary>SIGTERM, a grace period (libvirtd shuts down cleanly), then SIGKILL.</summary>
    private static void StopProcesses(IReadOnlyCollection<int> pids)
    {
        foreach (var pid in pids)
        {
            CommandRunner.Run("kill", "-TERM", pid.ToString());
        }

        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline && pids.Any(p => Directory.Exists($"/proc/{p}")))
        {
            Thread.Sleep(100);
        }

        foreach (var pid in pids.Where(p => Directory.Exists($"/proc/{p}")))
        {
            CommandRunner.Run("kill", "-KILL", pid.ToString());
        }

        deadline = DateTime.UtcNow.AddSeconds(5);
        while (DateTime.UtcNow < deadline && pids.Any(p => Directory.Exists($"/proc/{p}") && !IsZombie(p)))
        {
            Thread.Sleep(50);
        }
    }

    private static bool IsZombie(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z');
        }
        catch (IOException)
        {
            return true;
        }
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

    private static string ReadTail(string file)
    {
        try
        {
            var lines = File.ReadAllLines(file);
            return string.Join(" | ", lines.TakeLast(5));
        }
        catch (IOException)
        {
            return "(no log)";
        }
    }
}
