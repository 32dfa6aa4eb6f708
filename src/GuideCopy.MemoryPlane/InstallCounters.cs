namespace GuideCopy.MemoryPlane;

/// <summary>
/// What one <see cref="PageInstaller"/> counted, read through its properties. Each page is
/// counted once, by the route that first made it done (<see cref="ZeroPages"/>,
/// <see cref="PresentPages"/>, <see cref="RemovedPages"/>, <see cref="ByOrigin"/>; see
/// <see cref="RegisteredRam.MarkDone"/>), so once complete they add up to the page count.
/// </summary>
/// <remarks>
/// Fields, not properties: they are incremented with <see cref="Interlocked"/> by reference, a
/// route's counter passed to <see cref="RegisteredRam.MarkDone"/> as it is.
/// </remarks>
internal sealed class InstallCounters
{
    public long Faults, Installed, ZeroResolved, RemovedPages, Duplicates, Wakes, ZeroPages, PresentPages;

    /// <summary>Pages installed from the source, by <see cref="PageOrigin"/> (its value is the index).</summary>
    public readonly long[] ByOrigin = new long[(int)PageOrigin.Warm + 1];

    /// <summary>How long each fault that waited for the source waited.</summary>
    public FaultHistogram Stalls { get; } = new();
}
