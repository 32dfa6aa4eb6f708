using GuideCopy.MemoryPlane;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using LibvirtSharp;

namespace GuideCopy.Migration.Agent;

// A restarted agent takes the migration up from its journal entry.
public sealed partial class DestinationSide
{
    /// <summary>
    /// A starting agent finds this migration in its journal. Before "committing" the copy never
    /// ran: it is removed. From "committing" on the shim keeps its copy of the uffd (the VM
    /// stalls instead of reading zeros) and connects again to the same socket; the pager
    /// rebuilds its bitmap from the pages already in the RAM file, the decision is asked again
    /// if it was not heard, and the source's page server resumes the push from there.
    /// </summary>
    public static DestinationSide? Recover(AgentOptions options, byte[] secret, MigrationJournal journal, JournalEntry entry, AgentLog log)
    {
        var side = new DestinationSide(options, secret, entry.Id, journal, log);
        side.Remember(entry);
        side.AdoptWorkDir();
        if (entry is { StartsOnLoad: true, Stage: MigrationStage.DestinationPrepared or MigrationStage.DestinationLoaded })
        {
            // Armed to start by itself: whether it ran is the domain's to say, not the journal's.
            bool? runs = side.RunsOrWillRun();
            if (runs is null)
            {
                // Not "never ran": nothing is destroyed and the source is not told on a guess.
                log.Error($"{entry.Id}: cannot tell whether {entry.Domain} runs here (libvirt does not say): left as it is; the next agent start asks again");
                side.Dispose();
                return null;
            }

            if (runs == true)
            {
                log.Info($"{entry.Id}: {entry.Domain} loaded its whole device state and runs: the source had committed");
                entry = entry with { Stage = MigrationStage.Committed, ResumedAtUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() };
                side.Record(entry);
                side.DisarmRunningCopy();
            }
            else
            {
                log.Info($"{entry.Id}: found a migration of {entry.Domain} whose copy never ran: removing it and telling the source");
                side.GiveUpUnrunCopy("the destination agent restarted before its QEMU had the whole device state", mayRun: false);
                side.Dispose();
                side._release = Task.Run(() => side.TellSourceAbandoned());
                return side;
            }
        }

        switch (entry.Stage)
        {
            case MigrationStage.RolledBack when entry.AbandonPending:
                side._release = Task.Run(() => side.TellSourceAbandoned());
                return side;
            case MigrationStage.DestinationPrepared or MigrationStage.DestinationLoaded:
                log.Info($"{entry.Id}: found a migration of {entry.Domain} that never committed: removing its paused copy");
                side.DestroyCopy();
                side.Record(entry with { Stage = MigrationStage.RolledBack, Note = "the destination agent restarted before the commit point" });
                side.Dispose();
                return null;
            case MigrationStage.Committing or MigrationStage.Committed:
                side._conn = Connection.Open(options.LibvirtUri);
                // The shim connects again to the path it was started with: the domain's own directory.
                using (var running = side._conn.LookupDomain(entry.Domain))
                {
                    side._domainDir = side.Work.DomainDir(running.Uuid);
                }

                side._shim = new ShimListener(Path.Combine(side._domainDir, "shim.sock"), DomainShimRules.For(options, side.Qemu, entry.Domain))
                {
                    Rejected = m => log.Info($"{entry.Id}: refused a shim: {m}"),
                };
                side._recovery = Task.Run(async () =>
                {
                    var registration = await side._shim.AcceptAsync(side._stop.Token);
                    side._registration = registration;
                    // Committing: no push lane before the resume (the source takes one as "it runs" and lets its paused QEMU go).
                    side.StartPager(registration, entry.PageServer!, trustRamFile: true, deferPush: entry.Stage == MigrationStage.Committing);
                    log.Info($"{entry.Id}: recovered after an agent restart: the shim handed its uffd again (QEMU pid {registration.QemuPid})");
                    if (entry.Stage == MigrationStage.Committing)
                    {
                        lock (side._lock)
                        {
                            side._decision ??= side.OnCommitThread();
                        }
                    }
                    else
                    {
                        side.StartCompletion();
                    }
                });
                log.Info($"{entry.Id}: found a {entry.Stage} migration of {entry.Domain}; waiting for its shim to reconnect");
                return side;
            case MigrationStage.Completed when !entry.SourceReleased:
                side._release = Task.Run(side.ReleaseSource);
                return side;
            default:
                return null;
        }
    }
}
