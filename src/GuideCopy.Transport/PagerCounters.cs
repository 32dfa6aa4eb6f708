using System.Diagnostics;
using System.Text.Json.Serialization;
using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>
/// Every counter of a destination's pager, in one record (the model: QEMU's one
/// <c>mig_stats</c>). <see cref="Pager.Counters"/> fills it (<see cref="From"/>) from its
/// installer and lanes; the agent sends it as it is, nested by name (<c>DestinationStatus.Pages</c>);
/// the report reads it by name (<c>PageCounts.From</c>, <c>FaultStats.From</c>). A new counter is
/// one property here and one line in <see cref="From"/>, plus the report line if it is reported.
/// </summary>
/// <remarks>
/// Routes: each page is counted once, by what first made it present (<see cref="DemandPages"/>,
/// <see cref="PushPages"/>, <see cref="LocalityPages"/>, <see cref="BackgroundPages"/>; zero
/// from the zero map <see cref="ZeroPages"/>; gone by the guest's discard <see cref="RemovedPages"/>;
/// already in place after a restart <see cref="PresentAtStart"/>), so they sum to
/// <see cref="PageCount"/> once done. <see cref="DuplicatePages"/> counts second arrivals.
/// </remarks>
public readonly record struct PagerCounters
{
    [JsonConverter(typeof(JsonStringEnumConverter<InstallOutcome>))]
    public InstallOutcome? Outcome { get; init; }
    public long PageCount { get; init; }
    /// <summary>Bytes per page of the registered RAM: 4096 on tmpfs, 2 MiB on hugetlbfs.</summary>
    public int PageSize { get; init; }
    public long DonePages { get; init; }
    public long Faults { get; init; }
    public long InstalledPages { get; init; }
    public long ZeroResolvedPages { get; init; }
    public long ZeroPages { get; init; }
    public long RemovedPages { get; init; }
    public long DuplicatePages { get; init; }
    public long PresentAtStart { get; init; }
    public long DemandPages { get; init; }
    public long PushPages { get; init; }
    public long LocalityPages { get; init; }
    public long BackgroundPages { get; init; }
    /// <summary>Pages installed from the warm-up (sent while the source ran, good by the verdict).</summary>
    public long WarmPages { get; init; }
    /// <summary>Pages the warm-up sent (data and zero), held until the verdict.</summary>
    public long WarmHeldPages { get; init; }
    /// <summary>Warm pages the verdict called stale (written after they were sent): dropped, each sent again.</summary>
    public long WarmStalePages { get; init; }
    /// <summary>Faults the guest waited on (a fault resolved by a page already in flight counts too).</summary>
    public long StallCount { get; init; }
    public double StallP50Ms { get; init; }
    public double StallP99Ms { get; init; }
    public double StallMaxMs { get; init; }
    public double StallTotalMs { get; init; }
    public long BytesReceived { get; init; }
    public int Reconnects { get; init; }
    /// <summary>Lanes dropped because a frame failed its checks (each is asked for again).</summary>
    public int LaneErrors { get; init; }
    public double ElapsedMs { get; init; }

    /// <summary>Pages that never crossed the wire because they were zero: the zero map's and the guest's discards.</summary>
    [JsonIgnore]
    public long ZeroOrRemovedPages => ZeroPages + RemovedPages;

    /// <summary>
    /// The counters snapshot of <see cref="Pager.Counters"/>: the lanes' figures, and the
    /// installer's once there is one (before, the registration's page count and nothing done).
    /// </summary>
    internal static PagerCounters From(PageInstaller? installer, InstallOutcome? outcome, SourceLanes lanes, Stopwatch clock, WarmPages warm)
    {
        var counted = new PagerCounters
        {
            Outcome = outcome,
            PageCount = lanes.Registration.PageCount,
            PageSize = lanes.Registration.PageSize,
            BytesReceived = lanes.BytesReceived,
            Reconnects = lanes.Reconnects,
            LaneErrors = lanes.LaneErrors,
            ElapsedMs = clock.Elapsed.TotalMilliseconds,
        };
        if (installer is null) return counted;
        var h = installer.Stalls;
        return counted with
        {
            PageCount = installer.PageCount,
            DonePages = installer.Done.Count,
            Faults = installer.Faults,
            InstalledPages = installer.InstalledPages,
            ZeroResolvedPages = installer.ZeroResolvedPages,
            ZeroPages = installer.ZeroPages,
            RemovedPages = installer.RemovedPages,
            DuplicatePages = installer.DuplicatePages,
            PresentAtStart = installer.PresentPages,
            DemandPages = installer.InstalledBy(PageOrigin.Demand),
            PushPages = installer.InstalledBy(PageOrigin.Push),
            LocalityPages = installer.InstalledBy(PageOrigin.Locality),
            BackgroundPages = installer.InstalledBy(PageOrigin.Background),
            WarmPages = installer.InstalledBy(PageOrigin.Warm),
            WarmHeldPages = warm.Held,
            WarmStalePages = warm.Dropped,
            StallCount = h.Count,
            StallP50Ms = h.Percentile(0.5).TotalMilliseconds,
            StallP99Ms = h.Percentile(0.99).TotalMilliseconds,
            StallMaxMs = h.Max.TotalMilliseconds,
            StallTotalMs = h.Total.TotalMilliseconds,
        };
    }
}
