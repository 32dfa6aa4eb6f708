using System.Diagnostics;

namespace GuideCopy.Lab;

/// <summary>
/// One "host" of the lab: a libvirtd in its own mount namespace (private /etc/libvirt,
/// /run/libvirt, /var/lib/libvirt, /var/log/libvirt, /dev/shm) and network namespace.
/// A holder process keeps both namespaces alive; everything else enters them with nsenter.
/// </summary>
public sealed class LabHost
{
    internal LabHost(LabLayout layout, LabHostState state)
    {
        Layout = layout;
        State = state;
    }

    public LabLayout Layout { get; }

    public LabHostState State { get; }

    public string Name => State.Name;

    /// <summary>The host's address on the lab link (the veth pair).</summary>
    public string Address => State.Address;

    public int HolderPid => State.HolderPid;

    /// <summary>
    /// The host's files as the host sees them, reachable from outside its mount namespace:
    /// /proc/PID/root resolves paths through the holder's mount tree.
    /// </summary>
    public string RootPath => $"/proc/{HolderPid}/root";

    /// <summary>A libvirt URI that reaches this host's libvirtd from the machine's own namespaces.</summary>
    public string LibvirtUri => $"qemu+unix:///system?socket={RootPath}/run/libvirt/libvirt-sock";

    /// <summary>The URI the other lab host uses to reach this one (libvirtd listens on the link).</summary>
    public string PeerLibvirtUri => $"qemu+tcp://{Address}/system";

    /// <summary>The host agent's control socket, reachable from the machine's own namespaces.</summary>
    public string AgentSocket => $"{RootPath}/run/guidecopy/agent.sock";

    /// <summary>The tmpfs directory for guest RAM files (4 KiB pages), as seen inside the host.</summary>
    public const string TmpfsRamDir = "/dev/shm/libvirt-ram";

    /// <summary>
    /// The host's own hugetlbfs mount (2 MiB pages), inside its private /dev/shm so each host has
    /// its own: memory_backing_dir of a lab brought up with huge pages.
    /// </summary>
    public const string HugePageDir = "/dev/shm/libvirt-huge";

    /// <summary>libvirt's memory_backing_dir on this host, as seen inside it: guest RAM files live under it.</summary>
    public string RamDir => State.HugePages ? HugePageDir : TmpfsRamDir;

    public bool IsAlive => Directory.Exists($"/proc/{HolderPid}") && File.Exists($"/proc/{HolderPid}/ns/mnt");

    /// <summary>The argument prefix that runs a program inside this host's namespaces.</summary>
    public string[] EnterArgs(string program, params string[] args) =>
        ["-t", HolderPid.ToString(), "-m", "-n", "--", program, .. args];

    /// <summary>Runs a command inside the host and waits for it.</summary>
    public CommandResult Run(string program, params string[] args) =>
        CommandRunner.Run("nsenter", EnterArgs(program, args));

    /// <summary>Runs a command inside the host; throws with its stderr when it fails.</summary>
    public string Check(string program, params string[] args) =>
        CommandRunner.Check("nsenter", EnterArgs(program, args));

    /// <summary>Starts a long-running process inside the host (an agent, a test program).</summary>
    public Process Start(string program, IEnumerable<string> args, IDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo("nsenter")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in EnterArgs(program, [.. args]))
        {
            psi.ArgumentList.Add(a);
        }

        if (environment is not null)
        {
            foreach (var (k, v) in environment)
            {
                psi.Environment[k] = v;
            }
        }

        return Process.Start(psi) ?? throw new LabException($"cannot start '{program}' on lab host {Name}");
    }

    /// <summary>Names of the domains libvirt knows on this host (running or defined).</summary>
    public IReadOnlyList<string> DomainNames()
    {
        var r = CommandRunner.Run("virsh", "-c", LibvirtUri, "list", "--all", "--name");
        return r.Succeeded
            ? r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            : [];
    }
}
