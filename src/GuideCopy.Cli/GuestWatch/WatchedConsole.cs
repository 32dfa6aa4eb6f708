using GuideCopy.Guest;
using GuideCopy.Migration.Controller;

namespace GuideCopy.Cli.GuestWatch;

/// <summary>A lab guest's console being followed (<see cref="ConsoleGuestWatch"/>), with the heartbeats it held before.</summary>
/// <param name="follower">The heartbeats seen live, stamped with host time.</param>
/// <param name="history">The heartbeats in the console when the watch started (guest time is reliable there).</param>
/// <param name="coverLostWork">Watch the whole lost-work window (<see cref="ThroughputWindows.LostWork"/> from the start) before reading: compare's runs.</param>
internal sealed class WatchedConsole(HeartbeatFollower follower, IReadOnlyList<Heartbeat> history, bool coverLostWork) : IWatchedGuest
{
    private readonly DateTime _startedAt = DateTime.UtcNow;

    public async Task<GuestReadout> FinishAsync(DateTime switchoverAt, DateTime completedAt, TimeSpan? observeAfter, CancellationToken ct)
    {
        await ThroughputWindows.ObserveAsync(switchoverAt, completedAt, observeAfter, coverLostWork ? _startedAt + ThroughputWindows.LostWork : null, ct);
        var live = follower.Snapshot();
        return new GuestReadout(ThroughputWindows.Compute(history, live, switchoverAt, completedAt), ThroughputWindows.Series(history, live, switchoverAt));
    }

    public void Dispose() => follower.Dispose();
}
