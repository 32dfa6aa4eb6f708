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

public sealed record SwitchoverRequest(string MigrationId, string Domain, long BandwidthBytesPerSecond, bool Push, GuideCopy.Migration.Guide.GuideOptions? Guide = null, bool ClearTextLanes = false);

public sealed record GuidePrepareRequest(string MigrationId, string Domain);

public sealed record SwitchoverResult(
    string DeviceState, int DeviceStateBytes, string PageServer, long PageCount, long ZeroPages,
    long SuspendedAtUnixMs, double DeviceStateSaveMs, ulong SessionId = 0, string Lanes = "");

/// <summary>PersistentXml: the source's definition, defined on the destination when every page is in (null: the domain stays transient).</summary>
public sealed record DestinationPrepareRequest(string MigrationId, string MigratableXml, string Domain = "", string? PersistentXml = null);

public sealed record DestinationLoadRequest(string MigrationId, string DeviceState, string PageServer, ulong SessionId = 0, bool ClearTextLanes = false);

public sealed record DestinationStartResult(double StartMs, double LoadMs, int QemuPid);

public sealed record MigrationRequest(string MigrationId);

/// <summary>
/// SourceRolledBack: the source has taken the decision "rolled back" (the caller heard it say
/// so), so a destination still asking for the decision may remove its copy: it can never resume.
/// </summary>
public sealed record AbortRequest(string MigrationId, bool SourceRolledBack = false);

public sealed record ResumeResult(long ResumedAtUnixMs);

/// <summary>The pager's progress and, once done, its final figures.</summary>
public sealed record DestinationStatus(
    bool Done, string? Outcome, long PageCount, long DonePages, long Faults, long ZeroResolvedPages,
    long DemandPages, long PushPages, long LocalityPages, long BackgroundPages, long RemovedPages, long DuplicatePages,
    long StallCount, double StallP50Ms, double StallP99Ms, double StallMaxMs, double StallTotalMs,
    long BytesReceived, int Reconnects, double ElapsedMs, string Stage = "", int LaneErrors = 0, string? Note = null,
    long ResumedAtUnixMs = 0);

public sealed record DestinationFinishRequest(string MigrationId, string? PersistentXml);

public sealed record SourceFinishResult(
    long DemandPages, long PushPages, long LocalityPages, long BackgroundPages, long ZeroPagesSkipped, long BytesOnWire,
    GuideCopy.Migration.Guide.GuideStats? Guide = null);

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
