using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using GuideCopy.Transport;

namespace GuideCopy.Migration.Host;

/// <summary>
/// Every knob of the agent, with its default and unit. Bound from the "Agent" section of
/// /etc/guidecopy/guidecopy.json, GUIDECOPY__AGENT__* environment variables and --Agent:* flags.
/// </summary>
public sealed class AgentOptions
{
    /// <summary>UNIX socket of the control channel (for a controller on the same host).</summary>
    public string ControlSocket { get; set; } = "/run/guidecopy/agent.sock";

    /// <summary>TCP address:port of the control channel for remote controllers; empty: none.</summary>
    public string ControlListen { get; set; } = "";

    /// <summary>TCP address:port the page server listens on while this host is a source.</summary>
    public string PageListen { get; set; } = $"0.0.0.0:{PageServerOptions.DefaultPort}";

    /// <summary>Address destinations use to reach this host's page server; empty: the first non-loopback IPv4.</summary>
    public string AdvertiseAddress { get; set; } = "";

    /// <summary>File holding the shared secret (same on every host); mode 0600.</summary>
    public string SecretFile { get; set; } = "/etc/guidecopy/secret";

    /// <summary>The QEMU LD_PRELOAD shim installed by scripts/host-setup.</summary>
    public string ShimLibrary { get; set; } = "/usr/local/lib/guidecopy/libguidecopy-shim.so";

    /// <summary>This host's libvirtd.</summary>
    public string LibvirtUri { get; set; } = "qemu:///system";

    /// <summary>libvirt's memory_backing_dir (qemu.conf); must be on tmpfs or hugetlbfs.</summary>
    public string RamDir { get; set; } = "/dev/shm/libvirt-ram";

    /// <summary>Per-migration sockets and files (root:<see cref="QemuGroup"/> 0750); removed when a migration ends.</summary>
    public string WorkDir { get; set; } = "/run/guidecopy/work";

    /// <summary>The user libvirt runs QEMU as (qemu.conf <c>user</c>): the only uid whose shim may hand this agent a userfaultfd.</summary>
    public string QemuUser { get; set; } = "libvirt-qemu";

    /// <summary>
    /// QEMU's group (qemu.conf <c>group</c>; Debian's libvirt runs QEMU as libvirt-qemu:libvirt-qemu):
    /// the group of the work directories and their sockets, the only one that reaches them.
    /// Not kvm: that group often holds people (it opens /dev/kvm).
    /// </summary>
    public string QemuGroup { get; set; } = "libvirt-qemu";

    /// <summary>Where libvirt keeps each running domain's pid file, NAME.pid (qemu:///system: /run/libvirt/qemu): a shim must come from that pid.</summary>
    public string QemuPidDir { get; set; } = "/run/libvirt/qemu";

    /// <summary>
    /// The journal: one file per migration this host takes part in, its last stage and what is
    /// needed to go on from it. Must survive an agent restart (not tmpfs for a host reboot either).
    /// </summary>
    public string JournalDir { get; set; } = "/var/lib/guidecopy/journal";

    /// <summary>Ended migrations (and their reports) stay in the journal this long, in days.</summary>
    public int JournalKeepDays { get; set; } = 7;

    /// <summary>
    /// Before the commit point, a migration whose controller renewed nothing for this long is
    /// rolled back by the agent itself (the controller died or lost both hosts), in seconds.
    /// </summary>
    public int ControllerLeaseSeconds { get; set; } = 15;

    /// <summary>How long the destination's resume call waits for the source's commit decision, in seconds (it keeps asking after).</summary>
    public int CommitAnswerSeconds { get; set; } = 20;

    /// <summary>How long a completed destination keeps trying to tell the source to remove its copy, in seconds.</summary>
    public int SourceReleaseSeconds { get; set; } = 600;

    /// <summary>
    /// Fault injection for the fault-matrix tests: the agent carries out this request and then
    /// drops the connection instead of replying (e.g. "dest.resume": the lost reply at the
    /// commit point). Empty in production.
    /// </summary>
    public string DropReplyTo { get; set; } = "";

    /// <summary>
    /// Fault injection for the fault-matrix tests: the source waits this long between journaling
    /// Committed and sending the device state's last byte (the released commit), so a test can
    /// kill it there. 0 in production.
    /// </summary>
    public int StallBeforeReleaseMs { get; set; }

    /// <summary>
    /// Fault injection for the fault-matrix tests: the source takes QEMU's verdict on its save as
    /// failed, after the stream ended whole and Committed was journaled beside the verdict. False
    /// in production.
    /// </summary>
    public bool FailVerdict { get; set; }

    /// <summary>Longest wait for QEMU to save or load device state, in seconds.</summary>
    public int DeviceStateTimeoutSeconds { get; set; } = 60;

    /// <summary>Nice value of the guide's QEMU threads (-20..19): it may only use CPU the host's VMs leave idle.</summary>
    public int GuideNice { get; set; } = 19;

    /// <summary>
    /// How the guide's QEMU is scheduled: <c>Idle</c> (SCHED_IDLE: only CPU nobody else wants, preempted
    /// at once by any waking task) or <c>Nice</c> (normal policy at <see cref="GuideNice"/>).
    /// </summary>
    public GuideCpuPolicy GuideCpuPolicy { get; set; } = GuideCpuPolicy.Idle;

    /// <summary>
    /// SCHED_FIFO priority (1-99) of the agent threads a destination vCPU's page fault waits on:
    /// the uffd reader and demand lane on the destination, the demand lane's server on the source.
    /// 0 leaves them in the fair class, where a waking thread can wait a time slice behind the push,
    /// and the guide's fault service waits behind the push too, so the guide stops helping
    /// (docs/tuning.md, "Demand threads under SCHED_FIFO"). Without CAP_SYS_NICE the agent falls
    /// back to nice -10. Default 2: one above <see cref="PushRealtimePriority"/>.
    /// </summary>
    public int DemandRealtimePriority { get; set; } = 2;

    /// <summary>
    /// SCHED_FIFO priority of the destination's push-lane receiver (the thread that installs pushed
    /// pages), 0: fair class. Below <see cref="DemandRealtimePriority"/>, so a demand reply never
    /// waits for a push frame's install. In the fair class it waited behind the guest's vCPU while
    /// pushed pages sat in its socket, and the vCPU faulted on them (docs/tuning.md, "The push
    /// receiver under SCHED_FIFO").
    /// </summary>
    public int PushRealtimePriority { get; set; } = 1;

    /// <summary>Longest wait for the destination QEMU's shim to hand its uffd, in seconds.</summary>
    public int ShimTimeoutSeconds { get; set; } = 30;

    /// <summary>
    /// Where Prometheus scrapes <c>/metrics</c>: <c>address:port</c>; empty: the advertised
    /// (migration-link) address, port <see cref="DefaultMetricsPort"/>; <c>off</c>: no listener.
    /// </summary>
    public string MetricsListen { get; set; } = "";

    /// <summary>Not in Prometheus's list of allocated exporter ports (as of 2026).</summary>
    public const int DefaultMetricsPort = 9471;

    /// <summary>The metrics endpoint as address and port, or null for "off".</summary>
    public (string Address, int Port)? MetricsEndpoint()
    {
        if (MetricsListen.Equals("off", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        if (MetricsListen.Length > 0)
        {
            var ep = IPEndPoint.Parse(MetricsListen);
            return (ep.Address.ToString(), ep.Port);
        }

        var page = IPEndPoint.Parse(AdvertisedPageEndpoint());
        return (page.Address.ToString(), DefaultMetricsPort);
    }

    /// <summary>
    /// ADDR:PORT the destination's pager is told to reach this agent's page server at:
    /// <see cref="AdvertiseAddress"/> (else the first IPv4 address of an interface that is up
    /// and not loopback) and <paramref name="port"/> (a migration's page server), else <see cref="PageListen"/>'s.
    /// </summary>
    public string AdvertisedPageEndpoint(int? port = null)
    {
        port ??= IPEndPoint.Parse(PageListen).Port;
        string address = AdvertiseAddress;
        if (address.Length == 0)
        {
            address = NetworkInterface.GetAllNetworkInterfaces()
                .Where(i => i.OperationalStatus == OperationalStatus.Up && i.NetworkInterfaceType != NetworkInterfaceType.Loopback)
                .SelectMany(i => i.GetIPProperties().UnicastAddresses)
                .Where(a => a.Address.AddressFamily == AddressFamily.InterNetwork)
                .Select(a => a.Address.ToString())
                .FirstOrDefault() ?? "127.0.0.1";
        }

        return $"{address}:{port}";
    }
}

/// <summary>Scheduling of the guide's QEMU on the source host (<see cref="AgentOptions.GuideCpuPolicy"/>).</summary>
public enum GuideCpuPolicy
{
    Idle,
    Nice,
}
