using GuideCopy.Transport;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace GuideCopy.Migration.Report;

/// <summary>How a migration ended; the CLI's exit code follows it (docs/cli.md).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<MigrationOutcome>))]
public enum MigrationOutcome
{
    /// <summary>The VM runs on the destination, every page moved, the source is gone.</summary>
    Completed,

    /// <summary>Preflight found a problem; nothing was paused.</summary>
    Refused,

    /// <summary>A failure before the commit point; the source runs again, the destination was cleaned.</summary>
    RolledBack,

    /// <summary>A failure after the commit point; the destination is the VM (it may be stalled), the source is kept paused.</summary>
    FailedAfterCommit,

    /// <summary>After the commit point the controller stopped following (Ctrl-C, SIGTERM, no progress); the agents finish the migration.</summary>
    Detached,
}

/// <summary>
/// Pages by how they reached the destination. Every page is counted once, by the route that
/// first made it present: Demand + Guide + Locality + Background + Zero + Present = Total.
/// Duplicate counts second arrivals (a page pushed after a fault fetched it, a re-send after a
/// reconnect; pre-copy's re-sent dirty pages): pages that crossed the wire more than once.
/// Present: found already in place when a restarted agent took the migration over.
/// Warm: sent before the pause while the source ran (the warm-up) and good by the verdict;
/// WarmStale: warm pages the guest wrote after they were sent, so sent again after the pause
/// (each is a second crossing; they are counted once more under the route that brought them).
/// </summary>
/// <param name="PageSize">Bytes per page (4096; 2 MiB for RAM on hugetlbfs): counts times this are bytes of RAM.</param>
public sealed record PageCounts(long Total, long Demand, long Guide, long Locality, long Background, long Zero, long Duplicate, long Present = 0, int PageSize = 4096,
    long Warm = 0, long WarmStale = 0)
{
    /// <summary>The pages the categories account for (Total when the report adds up).</summary>
    public long Accounted => Demand + Guide + Locality + Background + Zero + Present + Warm;

    /// <summary>The report's page categories from the destination's counters (guide mode).</summary>
    public static PageCounts From(PagerCounters c) => new(c.PageCount, c.DemandPages, c.PushPages, c.LocalityPages,
        c.BackgroundPages, c.ZeroOrRemovedPages, c.DuplicatePages, c.PresentAtStart, c.PageSize > 0 ? c.PageSize : 4096, c.WarmPages, c.WarmStalePages);
}

/// <summary>
/// How guide mode's page data crossed the wire: Policy (auto, lz4, off), what the data pages
/// held (PageBytes), what their data took on the wire (WireBytes), and PageBytes / WireBytes
/// (1: nothing was packed). Frame headers, seals and the device state are not in either figure.
/// </summary>
public sealed record CompressionReport(string Policy, long PageBytes, long WireBytes, double? Ratio, long PackedRuns)
{
    public static CompressionReport From(PageCompression policy, PageServerCounters c) =>
        new(policy.ToString().ToLowerInvariant(), c.DataBytes, c.DataWireBytes, c.CompressionRatio is { } r ? Math.Round(r, 3) : null, c.PackedRuns);
}

/// <summary>Destination faults and how long the guest waited on them.</summary>
public sealed record FaultStats(long Faults, long Stalls, double? StallP50Ms, double? StallP99Ms, double? StallMaxMs, double? StallTotalMs)
{
    /// <summary>The destination's faults and stalls from its counters (guide mode), to the µs.</summary>
    public static FaultStats From(PagerCounters c) => new(c.Faults, c.StallCount, Round(c.StallP50Ms), Round(c.StallP99Ms), Round(c.StallMaxMs), Round(c.StallTotalMs));

    private static double Round(double ms) => Math.Round(ms, 3);
}

/// <summary>
/// The guest's own progress (its heartbeat work counter) per second: in the 10 s before the
/// switchover, the 20 s after it (downtime and stalls included), and after completion.
/// LostWorkSeconds: what the migration cost the guest, in seconds of its own work at its rate
/// before: from the start of the watch (the migration's start, so pre-copy's slow rounds count
/// too) over LostWorkWindowSeconds of host time (60 s when watched that long), that window less
/// the work done in it divided by the rate before (0: nothing lost; noise is about +-10% of the
/// window on this machine). LongestPauseSeconds: the longest host-time stretch between two
/// heartbeats whose work counter advanced, in that window (~1 s when nothing stalls: the heartbeat's period).
/// </summary>
public sealed record GuestThroughput(
    string Workload, double? BeforeRate, double? DuringRate, double? AfterRate, double? DuringRelative, double? AfterRelative,
    bool ChecksOk, long Heartbeats, string? LastHeartbeat,
    double? LostWorkSeconds = null, double? LostWorkWindowSeconds = null, double? LongestPauseSeconds = null);

/// <summary>
/// What the guide did. HitRate: of the pages the destination got from the guide's push or had
/// to fault in while the guide ran, the share the push delivered before any fault
/// (pushed / (pushed + demand)); an upper bound, since a pushed page the VM never touches counts
/// as a hit. LatePushes: demand faults on pages the guide had already touched;
/// LatePushesInFlight: of those, the ones the push had already sent; LateGuideLeadP50Ms: how long
/// before such a fault the guide had touched the page, median (how far ahead the guide ran);
/// FaultsAheadOfPush: late pushes whose log entry the push had not reached (the destination overtook it).
/// </summary>
public sealed record GuideReport(
    bool Ran, long PagesLogged, long PagesPushed, double? HitRate, long LatePushes, long Misses, long DemandWhileRunning,
    double RuntimeSeconds, double CpuSeconds, string StopReason, long PagesSkippedForLead = 0, long LatePushesInFlight = 0,
    double? LateGuideLeadP50Ms = null, long FaultsAheadOfPush = 0);

/// <summary>
/// Samples for the pictures (`migrate --plot`, `compare --plot`), times in seconds from the
/// switchover (negative: before it). GuestWork: the guest's work per second between two
/// heartbeats, host time. Pages (guide mode): what the destination had installed, by route,
/// at each poll. CapBytesPerSecond: the migration's bandwidth cap (0: none).
/// </summary>
public sealed record MigrationTimeline(IReadOnlyList<GuestWorkSample> GuestWork, IReadOnlyList<PagesSample> Pages, long CapBytesPerSecond, int PageSize = 4096);

public sealed record GuestWorkSample(double T, double WorkPerSecond);

public sealed record PagesSample(double T, long Demand, long Push, long Locality, long Background, long Zero);

/// <summary>Everything the report shows; the JSON form is the stable interface for scripts (docs/report-schema.json).</summary>
public sealed record MigrationReport
{
    public const int SchemaVersion = 1;

    public int Schema { get; init; } = SchemaVersion;

    public required string Mode { get; init; }

    public required string Domain { get; init; }

    public required string Source { get; init; }

    public required string Destination { get; init; }

    public required MigrationOutcome Outcome { get; init; }

    /// <summary>The migration id (guide mode): 'guidecopy job ID' shows it on the agents.</summary>
    public string? Id { get; init; }

    public string? Error { get; init; }

    /// <summary>Outcome Refused: each preflight problem, naming its fix (the same lines as <see cref="Error"/>).</summary>
    public IReadOnlyList<string>? Problems { get; init; }

    public DateTimeOffset StartedAt { get; init; }

    public double TotalSeconds { get; init; }

    /// <summary>Source paused to destination running (for guide/our modes: suspend -> resume as the agents saw it).</summary>
    public double? DowntimeMs { get; init; }

    /// <summary>The same pause by QEMU's own STOP and RESUME event stamps: libvirt's event delivery left out (hosts' clocks must agree).</summary>
    public double? DowntimeByQemuClocksMs { get; init; }

    public long? BytesOnWire { get; init; }

    public long? DeviceStateBytes { get; init; }

    /// <summary>How the page lanes travelled: "aegis-256" or "clear text" (guide mode; the control channel is always sealed).</summary>
    public string? Lanes { get; init; }

    public PageCounts? Pages { get; init; }

    /// <summary>Guide mode: page data packed on the lanes, and what it saved; null where the source's counters were not read.</summary>
    public CompressionReport? Compression { get; init; }

    public FaultStats? DestinationFaults { get; init; }

    public GuestThroughput? Guest { get; init; }

    /// <summary>The guide (mode guide with --guide on); null when no guide ran.</summary>
    public GuideReport? Guide { get; init; }

    /// <summary>Guide mode with --warm-up: what went before the pause (Skipped: why none did).</summary>
    public GuideCopy.Migration.Agent.WarmUpResult? WarmUp { get; init; }

    /// <summary>The samples behind the pictures; null for outcomes other than Completed, and in libvirt's and QEMU's modes when the guest's console cannot be read (guide mode then has page samples only).</summary>
    public MigrationTimeline? Timeline { get; init; }

    /// <summary>Phase timings in ms (preflight, device-state save, destination start, load, transfer ...).</summary>
    public IReadOnlyDictionary<string, double> PhasesMs { get; init; } = new Dictionary<string, double>();

    /// <summary>Mode-specific figures (libvirt job stats for the baselines, guide figures later).</summary>
    public IReadOnlyDictionary<string, JsonElement>? Details { get; init; }

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);
}
