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

public sealed record SwitchoverRequest(string MigrationId, string Domain, long BandwidthBytesPerSecond, bool Push, GuideCopy.Migration.Guide.GuideOptions? Guide = null);

public sealed record GuidePrepareRequest(string MigrationId, string Domain);

public sealed record SwitchoverResult(
    string DeviceState, int DeviceStateBytes, string PageServer, long PageCount, long ZeroPages,
    long SuspendedAtUnixMs, double DeviceStateSaveMs);

public sealed record DestinationPrepareRequest(string MigrationId, string MigratableXml);

public sealed record DestinationLoadRequest(string MigrationId, string DeviceState, string PageServer);

public sealed record DestinationStartResult(double StartMs, double LoadMs, int QemuPid);

public sealed record MigrationRequest(string MigrationId);

public sealed record ResumeResult(long ResumedAtUnixMs);

/// <summary>The pager's progress and, once done, its final figures.</summary>
public sealed record DestinationStatus(
    bool Done, string? Outcome, long PageCount, long DonePages, long Faults, long ZeroResolvedPages,
    long DemandPages, long PushPages, long LocalityPages, long BackgroundPages, long RemovedPages, long DuplicatePages,
    long StallCount, double StallP50Ms, double StallP99Ms, double StallMaxMs, double StallTotalMs,
    long BytesReceived, int Reconnects, double ElapsedMs);

public sealed record DestinationFinishRequest(string MigrationId, string? PersistentXml);

public sealed record SourceFinishResult(
    long DemandPages, long PushPages, long LocalityPages, long BackgroundPages, long ZeroPagesSkipped, long BytesOnWire,
    GuideCopy.Migration.Guide.GuideStats? Guide = null);

public sealed record Empty();

public sealed record DestinationCheckRequest(string Name, IReadOnlyList<string> DiskPaths, long RamBytes);

public sealed record DestinationCheckResult(IReadOnlyList<string> Problems);
