using System.Security.Cryptography;

namespace GuideCopy.Lab;

/// <summary>
/// The guidecopy agents of a lab's hosts, one per host as systemd runs one on a real host,
/// and what they share: the secret and the QEMU shim in the shared directory.
/// </summary>
internal sealed class LabAgents
{
    private readonly LabLayout _layout;

    public LabAgents(LabLayout layout) => _layout = layout;

    /// <summary>The shared secret both lab hosts' agents and the controller use (made at lab up).</summary>
    public string SecretFile => Path.Combine(_layout.DataDir, "secret");

    /// <summary>The shim as the lab hosts' QEMU loads it (a copy in the shared directory, readable by libvirt-qemu).</summary>
    public string ShimLibrary => Path.Combine(_layout.SharedDir, "lib", "libguidecopy-shim.so");

    /// <summary>The host's journal directory (one file per migration it took part in).</summary>
    public string JournalDir(LabHost h) => Path.Combine(_layout.HostDir(h.Name), "journal");

    /// <summary>
    /// Starts a guidecopy agent inside each host, as systemd would on a real host.
    /// <paramref name="agentCommand"/> is how to run this build's CLI (e.g. dotnet guidecopy.dll).
    /// </summary>
    public void StartAll(IReadOnlyList<LabHost> hosts, IReadOnlyList<string> agentCommand, string shimBuildPath, Action<string>? log)
    {
        if (!File.Exists(shimBuildPath))
        {
            throw new LabException($"the QEMU shim {shimBuildPath} is missing: build it with 'make -C native' (or run scripts/setup)");
        }

        InstallShim(shimBuildPath, ShimLibrary);
        if (!File.Exists(SecretFile))
        {
            File.WriteAllText(SecretFile, Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)) + "\n");
            File.SetUnixFileMode(SecretFile, (UnixFileMode)0b110_000_000);
        }

        foreach (var h in hosts)
        {
            Start(h, agentCommand, [], log);
        }
    }

    /// <summary>
    /// Puts the shim in place as a new file renamed over the old one, never by rewriting the old
    /// one: every QEMU of the lab has that file mapped, and truncating a mapped file takes its
    /// pages from the processes, even their private relocated copies (the kernel unmaps COW
    /// pages beyond the new end, as POSIX wants a SIGBUS there), so a running QEMU re-reads the
    /// shim unrelocated and jumps to its raw offsets (seen: two labs of one name brought up at
    /// once, QEMU segfaults at ip 0x1226 and 0x14d0, the shim's PLT and its destructor). A rename
    /// leaves the running ones the old inode, as install(1) does.
    /// </summary>
    internal static void InstallShim(string built, string installed)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(installed)!);
        string next = installed + ".new";
        File.Copy(built, next, overwrite: true);
        File.SetUnixFileMode(next, (UnixFileMode)0b111_101_101);
        File.Move(next, installed, overwrite: true);
    }

    /// <summary>Starts one host's agent with extra settings (Section:Key=value, e.g. fault injection for a test).</summary>
    public void Start(LabHost h, IReadOnlyList<string> agentCommand, IReadOnlyList<string> settings, Action<string>? log)
    {
        string agentLog = Path.Combine(_layout.HostDir(h.Name), "agent.log");
        string socket = Path.Combine(_layout.HostDir(h.Name), "agent", "agent.sock");
        File.Delete(socket);
        // Its own (empty) config file: a lab host must not pick up the machine's /etc/guidecopy.
        string config = Path.Combine(_layout.HostDir(h.Name), "guidecopy.json");
        File.WriteAllText(config, "{}\n");
        var args = new List<string>(agentCommand)
        {
            "agent",
            "--config", config,
            "--set", $"Agent:SecretFile={SecretFile}",
            "--set", $"Agent:AdvertiseAddress={h.Address}",
            "--set", $"Agent:PageListen={h.Address}:7171",
            "--set", $"Agent:ShimLibrary={ShimLibrary}",
            "--set", $"Agent:RamDir={h.RamDir}",
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
                throw new LabException($"host {h.Name}: the agent did not open {socket} within 30 s; see {agentLog}: {LogTail.Read(agentLog)}");
            }

            Thread.Sleep(100);
        }

        log?.Invoke($"host {h.Name}: agent up (control unix:{h.AgentSocket})");
    }

    /// <summary>The pid of the host's agent process, or null when none runs.</summary>
    public static int? Pid(LabHost h)
    {
        var r = CommandRunner.Run("pgrep", "-f", "-n", $"guidecopy.dll agent .*AdvertiseAddress={h.Address}");
        return r.Succeeded && int.TryParse(r.StdOut.Trim(), out int pid) ? pid : null;
    }
}
