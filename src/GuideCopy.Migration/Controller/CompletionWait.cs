using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Journal;
using GuideCopy.Migration.Report;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// After the commit point: the agents move every page and finish by themselves; the controller
/// watches, says when nothing moves, and detaches when interrupted or stuck.
/// </summary>
internal sealed class CompletionWait(MigrationRun run, GuideCopyReportBuilder reports)
{
    private sealed class StalledException(string message) : Exception(message);

    public async Task<MigrationReport> FollowAsync(CancellationToken ct)
    {
        DestinationStatus status;
        try
        {
            status = await WaitForCompletion(ct);
        }
        catch (Exception e)
        {
            run.StopWatchingTheGuest();
            await run.DisposeAllAsync();
            bool interrupted = e is OperationCanceledException;
            return reports.Ended(interrupted || e is StalledException ? MigrationOutcome.Detached : MigrationOutcome.FailedAfterCommit,
                $"{(interrupted ? "interrupted" : e.Message)} (after the commit point: the VM runs on {run.Plan.To.Name}; the agents finish the migration: follow it with 'guidecopy job {run.Id} --host {run.Plan.To.Name}')");
        }

        run.Clock.Phase("transfer");
        SourceFinishResult? served = null;
        string? sourceNote = null;
        try
        {
            var src = await run.Agents.SourceAsync(CancellationToken.None);
            served = await src.FinishSourceAsync(new MigrationRequest(run.Id), CancellationToken.None);
        }
        catch (AgentException e)
        {
            sourceNote = $"the source's figures are missing ({e.Message}); the destination tells it to remove its copy";
        }

        run.Clock.Phase("completion");
        var completedAt = DateTime.UtcNow;
        double totalSeconds = Math.Round(run.Clock.Elapsed.TotalSeconds, 3);
        var guest = run.Guest is { } watched
            ? await watched.FinishAsync(run.Switchover!.At, completedAt, run.Plan.ObserveAfter, CancellationToken.None)
            : new GuestReadout(null, []);
        run.Guest?.Dispose();
        var report = reports.Completed(status, served, sourceNote, totalSeconds, guest);
        await run.DisposeAllAsync();
        return report;
    }

    /// <summary>Polls the destination until it completed by itself; reports stalls, gives up following after <see cref="GuideCopyMigration.NoProgressLimit"/>.</summary>
    private async Task<DestinationStatus> WaitForCompletion(CancellationToken ct)
    {
        var limit = GuideCopyMigration.NoProgressLimit;
        long lastDone = -1;
        var lastMove = DateTime.UtcNow;
        while (true)
        {
            var s = await CallDestination(d => d.StatusAsync(new MigrationRequest(run.Id), ct), ct);
            run.PageSamples.Add(new PagesSample(Math.Round((DateTime.UtcNow - run.Switchover!.At).TotalSeconds, 3),
                s.Pages.DemandPages, s.Pages.PushPages, s.Pages.LocalityPages, s.Pages.BackgroundPages, s.Pages.ZeroOrRemovedPages));
            if (s.Pages.DonePages != lastDone)
            {
                lastDone = s.Pages.DonePages;
                lastMove = DateTime.UtcNow;
            }

            double still = (DateTime.UtcNow - lastMove).TotalSeconds;
            string phase = still >= 5 ? $"transfer stalled {still:0} s ({s.Stage}, {s.Pages.Reconnects} reconnects)" : "transfer";
            run.Clock.Report(phase, s.Pages.DonePages, s.Pages.PageCount, s.Pages.Faults, s.Pages.BytesReceived);
            // Failed before done: a destination that failed is never taken for one that finished
            // (the source's copy is destroyed once the controller finishes it).
            if (s.Stage == nameof(MigrationStage.Failed))
            {
                throw new AgentException($"the destination failed: {s.Note}");
            }

            if (s.Done)
            {
                return s;
            }

            if (DateTime.UtcNow - lastMove > limit)
            {
                throw new StalledException($"no page moved for {limit.TotalMinutes:0} min ({s.Stage}, {s.Pages.Reconnects} lane reconnects)");
            }

            await Task.Delay(250, ct);
        }
    }

    /// <summary>After the commit point the destination agent may restart (it takes the migration over from its journal): a lost connection is retried for <see cref="GuideCopyMigration.AgentRecovery"/>.</summary>
    private async Task<T> CallDestination<T>(Func<IDestinationAgent, Task<T>> call, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + GuideCopyMigration.AgentRecovery;
        while (true)
        {
            try
            {
                return await call(await run.Agents.DestinationAsync(ct));
            }
            catch (AgentException e) when (e.ConnectionLost && DateTime.UtcNow < deadline)
            {
                run.Clock.Report("destination agent lost; reconnecting");
                await run.Agents.DropDestinationAsync();
                await Task.Delay(500, ct);
            }
        }
    }
}
