using GuideCopy.Migration.Report;

namespace GuideCopy.Migration.Controller;

/// <summary>A guest being watched (<see cref="IGuestWatch.StartAsync"/>); disposing it stops the watch.</summary>
public interface IWatchedGuest : IDisposable
{
    /// <summary>
    /// Keeps watching until the report's windows are covered (<paramref name="observeAfter"/> more
    /// after completion, none when null or zero), then reads what the guest did around the switchover.
    /// </summary>
    Task<GuestReadout> FinishAsync(DateTime switchoverAt, DateTime completedAt, TimeSpan? observeAfter, CancellationToken ct);
}
