using GuideCopy.Migration.Control;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Guide;
using GuideCopy.Transport;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// One end of a migration as the controller reaches it: the host's libvirtd (from here), its
/// agent, and for libvirt's own modes the URI the other libvirtd uses and the address RAM goes to.
/// </summary>
/// <param name="Name">What the report calls the host (a URI or lab:a).</param>
/// <param name="PeerLibvirtUri">The libvirtd as the other host's libvirtd reaches it (peer-to-peer baselines).</param>
/// <param name="MigrationAddress">The host's address on the migration link (tcp://ADDR for QEMU's stream).</param>
public sealed record MigrationTarget(string Name, string LibvirtUri, AgentEndpoint Agent, string PeerLibvirtUri, string? MigrationAddress);

/// <summary>What to migrate, where, and how.</summary>
/// <param name="BandwidthBytesPerSecond">Cap on everything but demand pages (ours) or the whole stream (baselines); 0: none.</param>
/// <param name="GuestWatch">What follows the guest's own progress for the report's guest throughput (the CLI's console watch for lab guests); null: no guest figures.</param>
/// <param name="ObserveAfter">How long to watch the guest after completion for the report's "after" throughput.</param>
/// <param name="Guide">Run a guide on the source and when to stop it; null or disabled: no guide (demand, locality, background only).</param>
/// <param name="Timeout">libvirt modes: a pre-copy that has not converged by then is aborted (the source runs on); null: 10 min.</param>
/// <param name="AfterCommit">Runs right after the destination resumed (fault-injection drills and tests).</param>
/// <param name="Agents">How to reach the two agents; null: control channels to From.Agent and To.Agent with Secret (unit tests pass fakes).</param>
/// <param name="CommitAsk">How long a controller that lost the resume's reply asks the destination before the source arbitrates; null: 30 s.</param>
/// <param name="ClearTextLanes">Page lanes without encryption (--insecure-lanes, for closed lab links); the handshake still authenticates them.</param>
/// <param name="PageServerRoute">Rewrites the page-server address the destination is given (a relay on the link: drills and the man-in-the-middle test); null: as the source says.</param>
/// <param name="BeforeSwitchover">Runs once the destination (and guide) are prepared, before the source pauses (fault drills, tests).</param>
/// <param name="BeforeCommit">
/// Runs after the destination loaded the device state and before it is resumed: the window in
/// which a failure must roll back. For fault-injection drills and tests; null in normal use.
/// </param>
/// <param name="WarmUp">Guide mode: before the pause, send what the running VM does not write, for at most this long (migrate --warm-up; null: no warm-up).</param>
/// <param name="MaxDowntime">Guide mode: the destination refuses the commit (the source resumes) if the pause lasted longer than this up to the device state's load (migrate --max-downtime).</param>
/// <param name="KeepSourceDefinition">The source's persistent definition stays, shut off, when its copy is removed (virsh's default without --undefinesource).</param>
/// <param name="Compression">Guide mode: whether the page server LZ4-packs page runs (migrate --compress).</param>
/// <param name="BandwidthGroup">Guide mode: migrations naming the same group share <paramref name="BandwidthBytesPerSecond"/> on their source host (evacuate --bandwidth); null: their own cap.</param>
public sealed record MigrationPlan(
    string Domain, MigrationTarget From, MigrationTarget To, string Mode, long BandwidthBytesPerSecond, byte[] Secret,
    bool Push = true, IGuestWatch? GuestWatch = null, TimeSpan? ObserveAfter = null, Func<Task>? BeforeCommit = null,
    GuideOptions? Guide = null, TimeSpan? Timeout = null, Func<Task>? AfterCommit = null,
    IAgentConnector? Agents = null, Func<Task>? BeforeSwitchover = null, TimeSpan? CommitAsk = null,
    bool ClearTextLanes = false, Func<string, string>? PageServerRoute = null,
    TimeSpan? MaxDowntime = null, bool KeepSourceDefinition = false, PageCompression Compression = PageCompression.Auto,
    string? BandwidthGroup = null, TimeSpan? WarmUp = null);

/// <summary>Live progress for a terminal.</summary>
public sealed record MigrationProgress(string Phase, long PagesDone, long PagesTotal, long Faults, long BytesOnWire, double Seconds);
