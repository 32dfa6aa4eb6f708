using GuideCopy.Migration.Report;

namespace GuideCopy.Migration.Controller;

/// <summary>What a watched guest did: the report's throughput windows and its work over time (the timeline).</summary>
/// <param name="Throughput">Null when the guest was watched but said nothing.</param>
/// <param name="Work">Work per second, in seconds from the switchover.</param>
public sealed record GuestReadout(GuestThroughput? Throughput, IReadOnlyList<GuestWorkSample> Work);
