using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Journal;
using GuideCopy.Migration.Report;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// Undoes everything before the commit point, in the one order that is safe: the source takes
/// the decision "rolled back" (and resumes) first, so the destination can never resume after;
/// then the destination copy goes. Never cancelled: it runs on <see cref="CancellationToken.None"/>.
/// </summary>
internal sealed class Rollback(MigrationRun run, GuideCopyReportBuilder reports)
{
    /// <summary>What the source said to "roll back": its journal holds the one decision.</summary>
    private enum SourceAnswer
    {
        /// <summary>Nothing was created yet: there is nothing to ask.</summary>
        NotAsked,

        /// <summary>The source took the decision "rolled back": the destination can never resume.</summary>
        RolledBack,

        /// <summary>The source refused: it had already committed.</summary>
        Committed,

        /// <summary>The source agent could not be asked; it rolls back by itself (journal, lease).</summary>
        NoAnswer,
    }

    /// <summary>The rollback's report; null when the source says it already committed (the migration is followed then).</summary>
    public async Task<MigrationReport?> RunAsync(Exception cause)
    {
        run.StopWatchingTheGuest();
        string why = cause is OperationCanceledException ? "interrupted" : cause.Message;
        bool paused = run.Stage >= MigrationStage.SourcePaused;
        var (answer, note) = await AskTheSourceAsync(paused);
        if (answer == SourceAnswer.Committed && await TheSourceTookItBackAsync())
        {
            (answer, note) = (SourceAnswer.RolledBack, "; the destination copy never ran: the source runs again");
        }

        if (answer == SourceAnswer.Committed)
        {
            run.Clock.Report("the source had already committed: following the migration");
            run.CommittedAtTheSource();
            run.Committed(await CommitPoint.AskDestinationForTheCommitAsync(run, GuideCopyMigration.AgentRecovery) ?? new ResumeResult(0));
            return null;
        }

        bool sourceRolledBack = answer == SourceAnswer.RolledBack;
        if (sourceRolledBack || run.Stage < MigrationStage.SourcePaused)
        {
            note += await RemoveDestinationCopyAsync(sourceRolledBack);
        }

        await run.DisposeAllAsync();
        return reports.Ended(paused ? MigrationOutcome.RolledBack : MigrationOutcome.Refused, why + note);
    }

    /// <summary>Asks the source to take the decision "rolled back", waiting up to <see cref="GuideCopyMigration.SourceRecovery"/> for a lost agent.</summary>
    private async Task<(SourceAnswer, string Note)> AskTheSourceAsync(bool paused)
    {
        var deadline = DateTime.UtcNow + GuideCopyMigration.SourceRecovery;
        if (run.Stage < MigrationStage.DestinationPrepared)
        {
            return (SourceAnswer.NotAsked, "");
        }

        while (true)
        {
            try
            {
                var src = await run.Agents.SourceAsync(CancellationToken.None);
                await src.AbortSourceAsync(new MigrationRequest(run.Id), CancellationToken.None);
                return (SourceAnswer.RolledBack, paused ? "; rolled back: the source runs again" : "");
            }
            catch (AgentException e) when (e.Message.Contains("is committed", StringComparison.Ordinal))
            {
                return (SourceAnswer.Committed, "");
            }
            catch (AgentException e) when (e.ConnectionLost && DateTime.UtcNow < deadline)
            {
                run.Clock.Report("source agent lost; reconnecting to roll back");
                await run.Agents.DropSourceAsync();
                await Task.Delay(1000);
            }
            catch (AgentException e)
            {
                return (SourceAnswer.NoAnswer, $"; the source agent could not roll back ({e.Message}): it rolls back by itself when it runs again (its journal), and its lease on this controller runs out in Agent:ControllerLeaseSeconds");
            }
        }
    }

    /// <summary>
    /// The released commit: a source that committed is still the only copy if the destination's
    /// QEMU never got the last byte. The destination then removes its copy and tells the source
    /// (abandon), which rolls back. True once the source has: asked while the destination says
    /// it rolled back, for at most <see cref="GuideCopyMigration.AgentRecovery"/>.
    /// </summary>
    private async Task<bool> TheSourceTookItBackAsync()
    {
        var deadline = DateTime.UtcNow + GuideCopyMigration.AgentRecovery;
        while (DateTime.UtcNow < deadline)
        {
            string? stage = null;
            try
            {
                var dst = await run.Agents.DestinationAsync(CancellationToken.None);
                var s = await dst.StatusAsync(new MigrationRequest(run.Id), CancellationToken.None);
                if (s.ResumedAtUnixMs > 0)
                {
                    return false;
                }

                stage = s.Stage;
            }
            catch (AgentException e) when (e.ConnectionLost)
            {
                await run.Agents.DropDestinationAsync();
            }
            catch (AgentException)
            {
                // "no migration here": a restarted agent that removed the copy and forgot it, or one still starting.
            }

            if (stage is nameof(MigrationStage.Committed) or nameof(MigrationStage.Completed) or nameof(MigrationStage.Committing))
            {
                return false;
            }

            if (stage is nameof(MigrationStage.RolledBack))
            {
                try
                {
                    var src = await run.Agents.SourceAsync(CancellationToken.None);
                    await src.AbortSourceAsync(new MigrationRequest(run.Id), CancellationToken.None);
                    return true;
                }
                catch (AgentException e) when (e.Message.Contains("is committed", StringComparison.Ordinal))
                {
                    // Not told yet: the destination asks it again.
                }
                catch (AgentException e) when (e.ConnectionLost)
                {
                    await run.Agents.DropSourceAsync();
                }
            }

            await Task.Delay(500);
        }

        return false;
    }

    /// <summary>Once the source cannot commit any more: the destination copy (it never ran) goes, through its agent or else through libvirt.</summary>
    private async Task<string> RemoveDestinationCopyAsync(bool sourceRolledBack)
    {
        if (run.Stage < MigrationStage.DestinationPrepared)
        {
            return "";
        }

        try
        {
            if (run.Switchover?.Loading is { IsCompleted: false })
            {
                // Its dest.load waits for a last byte that will not come (the source rolled back
                // before sending it), on the connection this abort would queue behind.
                await run.Agents.DropDestinationAsync();
            }

            var dst = await run.Agents.DestinationAsync(CancellationToken.None);
            await dst.AbortDestinationAsync(new AbortRequest(run.Id, sourceRolledBack), CancellationToken.None);
            return "";
        }
        catch (AgentException e) when (e.ConnectionLost)
        {
            // The destination agent is gone: remove its paused QEMU through libvirt directly.
            return DestinationLeftovers.Remove(run.Plan.To.LibvirtUri, run.Plan.Domain, run.Prepared?.Uuid ?? "");
        }
        catch (AgentException e)
        {
            return $"; the destination refused to remove its copy ({e.Message})";
        }
    }
}
