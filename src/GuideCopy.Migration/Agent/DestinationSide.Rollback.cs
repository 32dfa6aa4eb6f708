using System.Diagnostics;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Journal;
using LibvirtSharp;
using LibvirtSharp.Native;

namespace GuideCopy.Migration.Agent;

// Before the commit point: the copy that never ran is destroyed (an abort, or the agent stopping).
public sealed partial class DestinationSide
{
    /// <summary>
    /// Rollback: destroy the transient destination QEMU (it never ran the guest) and clean up.
    /// Refused from "committing" on: only the source's decision can undo that.
    /// </summary>
    public void Abort(string why, bool sourceRolledBack = false)
    {
        if (Entry is { StartsOnLoad: true } && !Stage.IsFinal() && !Stage.IsCommitted() && Stage != MigrationStage.Committing)
        {
            AbortUnrun(why, sourceRolledBack);
            return;
        }

        lock (_lock)
        {
            if (Stage == MigrationStage.Committing && sourceRolledBack)
            {
                // The source said "rolled back": it can never say "committed" to our question.
                _stop.Cancel();
            }
            else if (Stage is MigrationStage.Committing or MigrationStage.Committed or MigrationStage.Completed)
            {
                throw new AgentException($"migration {Id} is {Stage} on the destination: it is not destroyed here (the source decides; 'guidecopy abort' asks it first)");
            }

            if (Entry is not null && Stage != MigrationStage.RolledBack)
            {
                Record(Entry with { Stage = MigrationStage.RolledBack, Note = why });
            }
        }

        DestroyCopy();
        Log($"{Id}: destination aborted ({why})");
        Dispose();
    }

    /// <summary>
    /// Rollback with the released commit armed: the source may have committed already (it does
    /// not wait for this side), so the copy goes only while QEMU cannot have the whole stream,
    /// and the source is told it never ran. A QEMU with the whole stream runs or fails by itself.
    /// </summary>
    private void AbortUnrun(string why, bool sourceRolledBack)
    {
        // A source that rolled back never sent the last byte: QEMU cannot run, nothing to ask it.
        if (!GiveUpUnrunCopy(why, mayRun: !sourceRolledBack, sourceRolledBack))
        {
            throw new AgentException($"migration {Id}: the destination QEMU had the whole device state and runs (the source committed): not destroyed here");
        }

        if (sourceRolledBack)
        {
            lock (_lock)
            {
                if (Entry is { AbandonPending: true })
                {
                    Record(Entry with { AbandonPending = false }); // given up first by the load this abort ended: nothing to tell
                }
            }
        }
        else
        {
            // In the background: a source agent that is down hears it when it is back (and this
            // agent's successor asks again if it goes first).
            _release = Task.Run(() => TellSourceAbandoned());
        }

        Log($"{Id}: destination aborted ({why})");
        Dispose();
    }

    /// <summary>A rollback the agent asks for itself (a failed step, a lease that ran out): the source's decision is not known here.</summary>
    void IMigrationSide.Abort(string why) => Abort(why);

    /// <summary>Destroys this migration's copy: a transient domain that never ran the guest (paused in -incoming).</summary>
    private void DestroyCopy()
    {
        try
        {
            _conn ??= Connection.Open(Options.LibvirtUri);
            var dom = _domain ?? (Domain.Length > 0 ? _conn.TryLookupDomain(Domain) : null);
            if (dom is { IsActive: true } && !dom.IsPersistent && dom.State.State != virDomainState.VIR_DOMAIN_RUNNING)
            {
                dom.Destroy();
            }
            else if (dom is null && _registration is not null)
            {
                // create may still be pending; the QEMU it started is found by its pid.
                try { Process.GetProcessById(_registration.QemuPid).Kill(); } catch (ArgumentException) { }
            }

            if (!ReferenceEquals(dom, _domain))
            {
                dom?.Dispose();
            }
        }
        catch (LibvirtException e)
        {
            Log($"{Id}: abort: {e.LibvirtMessage}");
        }
    }

    /// <summary>
    /// The agent stops. From "committing" on the migration goes on in the next agent (the shim
    /// holds the uffd meanwhile); before, the copy that never ran is removed.
    /// </summary>
    public void Shutdown()
    {
        _stop.Cancel();
        if (Stage is MigrationStage.Committing or MigrationStage.Committed or MigrationStage.Completed or MigrationStage.RolledBack or MigrationStage.Failed)
        {
            if (Stage is MigrationStage.Committing or MigrationStage.Committed)
            {
                Log($"{Id}: agent stopping mid-transfer; the next agent takes the migration over from the journal");
            }

            Dispose();
            return;
        }

        try
        {
            Abort("the destination agent stopped before the commit point");
        }
        catch (AgentException e)
        {
            Log(e.Message);
        }
    }
}
