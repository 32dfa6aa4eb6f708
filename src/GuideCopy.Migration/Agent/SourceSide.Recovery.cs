using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using LibvirtSharp;

namespace GuideCopy.Migration.Agent;

// A restarted agent takes the migration up from its journal entry.
public sealed partial class SourceSide
{
    /// <summary>
    /// A starting agent finds this migration in its journal: before the decision it resumes the
    /// source (nothing was promised to the destination); after it, it serves the frozen RAM
    /// again from the same address and session; at the end it removes what is left.
    /// </summary>
    public static SourceSide? Recover(AgentOptions options, byte[] secret, MigrationJournal journal, JournalEntry entry, AgentLog log)
    {
        var side = new SourceSide(options, secret, entry.Id, journal, log);
        side.Remember(entry);
        side.AdoptWorkDir();
        side.DestroyGuide();
        switch (entry.Stage)
        {
            case MigrationStage.Preflight:
                side.Record(entry with { Stage = MigrationStage.RolledBack, Note = "the source agent restarted before the switchover" });
                if (entry.FrozenRam is not null)
                {
                    // Armed, never paused: the link and QEMU's capability go, the VM ran all along.
                    side.DisarmRunningDomain();
                    FrozenRamLink.Release(side.Entry);
                }

                side.Dispose();
                return null;
            case MigrationStage.SourcePaused or MigrationStage.DeviceStateSaved:
                log.Info($"{entry.Id}: found a migration of {entry.Domain} that was not committed: rolling back");
                side.Abort("the source agent restarted before the commit point");
                return null;
            case MigrationStage.Committed when entry.FrozenRam is { } frozen && File.Exists(frozen):
                // The port it served on before: the destination's pager reconnects there.
                side._server = side.StartServer(frozen, entry.PageSize, entry.BandwidthBytesPerSecond, push: true, entry.SessionId,
                    entry.PageListen ?? side.Options.PageListen, listenPorts: 1);
                log.Info($"{entry.Id}: found a committed migration of {entry.Domain}: serving {frozen} again (session {entry.SessionId:x16})" +
                         (entry.WarmedUp ? "; every page of its warm-up declared stale (which were written since is not known here)" : ""));
                return side;
            case MigrationStage.Committed:
                side.Record(entry with { Stage = MigrationStage.Failed, Note = $"the frozen RAM {entry.FrozenRam} is gone: pages the destination lacks are lost" });
                log.Info($"{entry.Id}: committed, but the frozen RAM {entry.FrozenRam} is gone; the destination cannot finish");
                return null;
            case MigrationStage.Completed when !entry.SourceRemoved:
                side.DestroySourceCopy(); // a crash came between the record and the destroy
                side.Dispose();
                return null;
            default:
                return null;
        }
    }

    private void DisarmRunningDomain()
    {
        try
        {
            _conn ??= Connection.Open(Options.LibvirtUri);
            using var dom = _conn.TryLookupDomain(Domain);
            if (dom is { IsActive: true })
            {
                DeviceStateTransfer.DisarmCapabilities(dom);
            }
        }
        catch (LibvirtException e)
        {
            Lines.Warning($"{Id}: could not turn x-ignore-shared off on {Domain}: {e.LibvirtMessage}");
        }
    }
}
