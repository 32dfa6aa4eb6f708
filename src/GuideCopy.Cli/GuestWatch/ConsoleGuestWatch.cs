using GuideCopy.Guest;
using GuideCopy.Migration.Controller;
using GuideCopy.Migration.Definitions;

namespace GuideCopy.Cli.GuestWatch;

/// <summary>
/// Watches a lab test guest through its serial console file (<see cref="GuestConsole"/>): its
/// heartbeats give the report's guest throughput. A guest whose definition names no console
/// file, or whose file this controller cannot see, is not watched.
/// </summary>
/// <param name="consoleFile">The console file to read instead of the one the domain's definition names; null: that one.</param>
/// <param name="coverLostWork">Keep watching until the lost-work window (60 s from the start) is covered (compare); false: what the migration and --observe cover.</param>
internal sealed class ConsoleGuestWatch(string? consoleFile = null, bool coverLostWork = false) : IGuestWatch
{
    public async Task<IWatchedGuest?> StartAsync(DomainDefinition guest, CancellationToken ct)
    {
        string? console = consoleFile ?? guest.ConsoleFile;
        if (console is null || !File.Exists(console))
        {
            return null;
        }

        var follower = new GuestConsole(console).Follow();
        try
        {
            await WaitForAHeartbeat(follower, ct);
            // The "before" window comes from the console's history (guest time), in every mode:
            // a post-copy switched at once leaves the live follower no beats before it.
            return new WatchedConsole(follower, new GuestConsole(console).ReadAll(), coverLostWork);
        }
        catch
        {
            follower.Dispose();
            throw;
        }
    }

    private static async Task WaitForAHeartbeat(HeartbeatFollower follower, CancellationToken ct)
    {
        // A fresh heartbeat with a host timestamp anchors the "during" window; the console is polled, so this waits about one heartbeat.
        var deadline = DateTime.UtcNow.AddSeconds(1.5);
        while (follower.Snapshot().Count == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50, ct);
        }
    }
}
