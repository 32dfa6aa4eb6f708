using System.Diagnostics;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Journal;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// The switchover and the commit point (docs/migration.md, "Stages and the journal"): the pause,
/// the destination's load, then its resume on the source's decision "committed". The commit point
/// is never inferred from a reply: a lost or failed resume is answered by asking the destination.
/// </summary>
internal sealed class CommitPoint(MigrationRun run)
{
    private MigrationPlan Plan => run.Plan;

    /// <summary>
    /// The pause. The destination is asked first to load; then the source suspends and streams
    /// its device state to the destination over the migration link. Unless the plan holds the
    /// commit for a hook, the commit is released (docs/migration.md, "The released commit"): the
    /// source journals Committed before it sends the stream's last byte, and the destination
    /// QEMU, armed to start by itself, runs the moment it has loaded it. So nothing in the pause
    /// waits for this controller, nor for a question between the agents.
    /// </summary>
    public async Task SwitchoverAsync(CancellationToken ct)
    {
        run.Clock.Report("switchover");
        bool commitWhenLoaded = Plan.BeforeCommit is null;
        var loading = run.Agents.Destination!.LoadAsync(new DestinationLoadRequest(run.Id, commitWhenLoaded, Plan.MaxDowntime?.TotalMilliseconds ?? 0), ct);
        run.SourcePaused(new Switchover(loading, DateTime.UtcNow));
        SwitchoverResult switched;
        try
        {
            switched = await run.Agents.Source!.SwitchoverAsync(new SwitchoverRequest(run.Id, Plan.Domain, run.Armed!.GuideStarted ? Plan.Guide : null,
                ReleaseCommit: commitWhenLoaded, MaxDowntimeMs: Plan.MaxDowntime?.TotalMilliseconds ?? 0), ct);
        }
        catch
        {
            // The source rolled back; the destination's load ends with the rollback's abort.
            _ = loading.ContinueWith(t => t.Exception, TaskScheduler.Default);
            throw;
        }

        run.Switched(switched, commitWhenLoaded);
        run.Clock.Phases["suspend"] = switched.SuspendMs;
        run.Clock.Phases["deviceStateSave"] = switched.DeviceStateSaveMs;
        run.Clock.Phases["freeze"] = switched.FreezeMs;
        if (switched.VerdictMs > 0)
        {
            run.Clock.Phases["verdict"] = switched.VerdictMs;
        }
    }

    /// <summary>The destination's load (and, unless held, its commit); a hook that holds the commit runs between.</summary>
    public async Task LoadAsync()
    {
        if (Plan.BeforeCommit is not { } hook)
        {
            return; // the load and the commit are one request: CommitAsync hears its answer
        }

        var loaded = await run.Switchover!.Loading;
        run.DestinationLoaded();
        run.Clock.Phases["deviceStateLoad"] = loaded.LoadMs;
        await hook();
    }

    /// <summary>
    /// The commit point. The destination asks the source for the decision and resumes on
    /// "committed". Whatever happens to the reply (lost, timed out, interrupted), the answer
    /// comes from the destination's journal, asked again: never from a guess.
    /// </summary>
    public async Task CommitAsync(CancellationToken ct)
    {
        run.Committing();
        var asked = Stopwatch.StartNew();
        ResumeResult resumed;
        try
        {
            if (Plan.BeforeCommit is null)
            {
                var loaded = await run.Switchover!.Loading;
                run.Clock.Phases["deviceStateLoad"] = loaded.LoadMs;
                // Released: the source's verdict and journal before its last byte; QEMU resumes itself.
                run.Clock.Phases["commit"] = run.Switchover.Reply is { Committed: true } r ? r.CommitMs : loaded.CommitMs;
                run.Clock.Phases["resume"] = loaded.ResumeMs;
                resumed = new ResumeResult(loaded.ResumedAtUnixMs);
            }
            else
            {
                resumed = await run.Agents.Destination!.ResumeAsync(new MigrationRequest(run.Id), ct);
                // Journal Committing, the source's decision (its journal), the resume, journal Committed.
                run.Clock.Phases["commit"] = Math.Round(asked.Elapsed.TotalMilliseconds, 1);
            }
        }
        catch (AgentException e) when (e.Message.Contains("has not answered", StringComparison.Ordinal))
        {
            // The destination answered: it has not committed, it waits for the source's word.
            // Asking it again changes nothing; the rollback asks the source, whose journal holds
            // the one decision (a committed source refuses it, and the migration is followed).
            run.Clock.Report($"the destination is still waiting for the source's decision ({e.Message}); asking the source");
            throw;
        }
        catch (Exception e) when (e is AgentException { ConnectionLost: true } or OperationCanceledException or TimeoutException)
        {
            // No answer is not a "no": the destination may have resumed. Ask it; if it cannot
            // say, the rollback asks the source, whose journal holds the one decision.
            run.Clock.Report($"no answer to the resume ({e.Message}); asking the destination");
            resumed = await AskDestinationForTheCommitAsync(run, Plan.CommitAsk ?? GuideCopyMigration.DefaultCommitAsk)
                ?? throw new AgentException($"the destination did not confirm the commit ({e.Message})");
        }

        run.Committed(resumed);
        run.Clock.Phase("switchover");
        if (Plan.AfterCommit is { } afterCommit)
        {
            await afterCommit();
        }
    }

    /// <summary>
    /// Asks the destination (its journal, through dest.status) what became of the commit, for at
    /// most <paramref name="patience"/>: the recorded resume when it committed; null when it did
    /// not (rolled back, or the resume never reached it) or could not be asked.
    /// </summary>
    public static async Task<ResumeResult?> AskDestinationForTheCommitAsync(MigrationRun run, TimeSpan patience)
    {
        var deadline = DateTime.UtcNow + patience;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var dst = await run.Agents.DestinationAsync(CancellationToken.None);
                var s = await dst.StatusAsync(new MigrationRequest(run.Id), CancellationToken.None);
                if (s.Stage is nameof(MigrationStage.Committed) or nameof(MigrationStage.Completed) || s.ResumedAtUnixMs > 0)
                {
                    return new ResumeResult(s.ResumedAtUnixMs);
                }

                if (s.Stage is nameof(MigrationStage.RolledBack) or nameof(MigrationStage.DestinationLoaded) or nameof(MigrationStage.Failed))
                {
                    return null;
                }
            }
            catch (AgentException e) when (e.ConnectionLost)
            {
                await run.Agents.DropDestinationAsync();
            }
            catch (AgentException)
            {
                // "no migration here": a restarted agent still taking it up, or it never got it.
            }

            await Task.Delay(500);
        }

        return null;
    }
}
