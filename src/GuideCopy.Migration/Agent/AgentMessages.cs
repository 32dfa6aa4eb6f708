using GuideCopy.Migration.Guide;
using GuideCopy.Transport;

namespace GuideCopy.Migration.Agent;

// The requests and results of the control channel (JSON, camelCase). One record per message.

/// <summary>What the preflight needs to know about a host.</summary>
public sealed record HostFacts(
    string Hostname, string AgentVersion, string QemuVersion, ulong LibvirtVersion, string RamDir, string RamDirFileSystem,
    long RamDirFreeBytes, bool ShimPresent, string ShimLibrary, bool UserfaultfdAvailable, string PageAdvertise);

public sealed record DomainRequest(string Domain);

public sealed record SourcePrepareResult(
    string Name, string Uuid, string MigratableXml, string PersistentXml, bool Persistent, string RamPath,
    long RamBytes, string RamFileSystem, IReadOnlyList<string> Problems);

/// <summary>
/// Before the pause, on the source: the page server listening (serving nothing until the freeze),
/// the frozen-RAM link, libvirt handles, QEMU's capabilities and the device-state socket.
/// </summary>
/// <summary>KeepDefinition: the source's persistent definition stays when its copy is removed (virsh migrate without --undefinesource).
/// BandwidthGroup: the migrations naming it share BandwidthBytesPerSecond on this source (an evacuation); null: this one's own cap.</summary>
public sealed record SourceArmRequest(string MigrationId, string Domain, long BandwidthBytesPerSecond, bool Push, bool ClearTextLanes = false, bool KeepDefinition = false,
    PageCompression Compression = PageCompression.Auto, string? BandwidthGroup = null);

public sealed record SourceArmResult(string PageServer, ulong SessionId, long PageCount, string Lanes, double ArmMs);

/// <summary>
/// Before the pause, on the destination: its QEMU in migrate-incoming with the agent connected,
/// the pager's lanes to <paramref name="PageServer"/> authenticated (demand, push, control).
/// StartOnLoad: the released commit (docs/migration.md): QEMU runs by itself the moment it has
/// loaded the whole device state, whose last byte the source sends only once it has committed.
/// </summary>
public sealed record DestinationArmRequest(string MigrationId, string PageServer, ulong SessionId, bool ClearTextLanes = false, bool StartOnLoad = false);

/// <param name="HoldsWarmPages">This destination holds pages sent before the pause until the source's verdict (an older agent: false, and no warm-up is asked for).</param>
public sealed record DestinationArmResult(double ArmMs, bool HoldsWarmPages = false);

/// <summary>
/// Before the pause, on the armed source: send what the running VM does not write (docs/migration.md,
/// "The warm-up"), for at most <paramref name="MaxSeconds"/>.
/// </summary>
public sealed record WarmUpRequest(string MigrationId, double MaxSeconds);

/// <summary>What the warm-up did; Skipped says why it did not run (then nothing was sent and the migration goes on without).</summary>
public sealed record WarmUpResult(string? Skipped, long PagesSent, long ZeroPagesSent, long BytesSent, long StalePagesBeforePause, int Rounds,
    double DurationMs, double DrainMs, string StopReason);

/// <summary>
/// The pause: suspend, the device state streamed to the destination over the demand lane, the freeze.
/// ReleaseCommit: the source commits (journals Committed) with the stream's last byte held back
/// and then sends it, so the destination (armed with StartOnLoad) runs with no question asked;
/// MaxDowntimeMs: with it, the pause's length when the state is saved, over which it rolls back instead (0: no limit).
/// </summary>
public sealed record SwitchoverRequest(string MigrationId, string Domain, GuideOptions? Guide = null, bool ReleaseCommit = false, double MaxDowntimeMs = 0);

/// <param name="StartBeforePause">
/// Start the guide's QEMU now and answer once it is up (a capped link: the transfer takes long,
/// and the guide's lead counts more than its ~1 s start); else only check, and start it once the
/// destination runs (uncapped: the transfer is over before a guide leads, and its start would be
/// the longest step before the pause). docs/migration.md, "Where the pause goes".
/// </param>
public sealed record GuidePrepareRequest(string MigrationId, string Domain, bool StartBeforePause = false);

/// <summary>
/// SuspendMs: the suspend call; DeviceStateSaveMs: QMP migrate to the stream's end (streamed to
/// the destination meanwhile); FreezeMs: the end sent to the page server serving; VerdictMs: the
/// stream's end to QEMU's verdict known (with the released commit, Committed journaled meanwhile);
/// CommitMs (the released commit): the last byte sent. StreamEndedAtUnixUs and ReleasedAtUnixUs:
/// those two moments by the source host's clock (µs since the epoch), for the pause's breakdown
/// against QEMU's own STOP and RESUME stamps.
/// </summary>
public sealed record SwitchoverResult(
    int DeviceStateBytes, long PageCount, long SuspendedAtUnixMs, double SuspendMs, double DeviceStateSaveMs, double FreezeMs,
    bool Committed = false, double CommitMs = 0, long WarmStalePages = -1,
    double VerdictMs = 0, long StreamEndedAtUnixUs = 0, long ReleasedAtUnixUs = 0)
{
    /// <summary>A UTC time as the stamps here (and QEMU's, compared with them) are counted: µs since the epoch.</summary>
    public static long UnixMicros(DateTime utc) => (utc.Ticks - DateTime.UnixEpoch.Ticks) / TimeSpan.TicksPerMicrosecond;
}

/// <summary>PersistentXml: the source's definition, defined on the destination when every page is in (null: the domain stays transient).</summary>
public sealed record DestinationPrepareRequest(string MigrationId, string MigratableXml, string Domain = "", string? PersistentXml = null);

/// <summary>
/// Sent before the switchover: the destination waits for the device state on its demand lane,
/// loads it and, with <paramref name="CommitWhenLoaded"/>, goes straight on to the commit point
/// (as <see cref="IDestinationAgent.ResumeAsync"/>) with no controller round trip in the pause.
/// </summary>
/// <summary>MaxDowntimeMs: refuse the commit (the source resumes) if the pause has lasted longer when the device state is loaded; 0: no limit.</summary>
public sealed record DestinationLoadRequest(string MigrationId, bool CommitWhenLoaded = true, double MaxDowntimeMs = 0);

/// <summary>
/// The destination's steps, each in ms: StartMs its QEMU's start; LoadMs from the device state's
/// last byte to QEMU loaded; CommitMs the commit point (journal, the source's decision);
/// ResumeMs the resume call; ResumedAtUnixMs when it ran (0: not resumed).
/// </summary>
public sealed record DestinationStartResult(double StartMs, double LoadMs, int QemuPid, double CommitMs = 0, double ResumeMs = 0, long ResumedAtUnixMs = 0);

public sealed record MigrationRequest(string MigrationId);

/// <summary>
/// SourceRolledBack: the source has taken the decision "rolled back" (the caller heard it say
/// so), so a destination still asking for the decision may remove its copy: it can never resume.
/// </summary>
public sealed record AbortRequest(string MigrationId, bool SourceRolledBack = false);

public sealed record ResumeResult(long ResumedAtUnixMs);

/// <summary>
/// The destination's stage and its pager's counters, nested by name: <see cref="PagerCounters"/>
/// is each counter's one home, from the installer to the report.
/// </summary>
public sealed record DestinationStatus(bool Done, string Stage, PagerCounters Pages, string? Note = null, long ResumedAtUnixMs = 0);

public sealed record DestinationFinishRequest(string MigrationId, string? PersistentXml);

/// <summary>The source's part once done: its page server's counters and the guide's, nested by name.</summary>
public sealed record SourceFinishResult(PageServerCounters Served, GuideStats? Guide = null);

public sealed record Empty();

/// <summary>
/// One migration as an agent knows it (its journal entry and, while it runs, live figures):
/// what 'guidecopy jobs' and 'guidecopy job' show.
/// </summary>
public sealed record JobInfo(
    string Id, string Role, string Domain, string Stage, DateTimeOffset StartedAt, DateTimeOffset UpdatedAt, string? Note,
    long PagesDone, long PagesTotal, long Faults, long BytesOnWire, int Reconnects, double ElapsedSeconds, string? Guide,
    System.Text.Json.Nodes.JsonObject? Result);

public sealed record JobsResult(string Host, IReadOnlyList<JobInfo> Jobs);

/// <summary>What 'abort' did on one host.</summary>
public sealed record AbortResult(bool Done, string Message);

public sealed record DestinationCheckRequest(string Name, IReadOnlyList<string> DiskPaths, long RamBytes);

public sealed record DestinationCheckResult(IReadOnlyList<string> Problems);
