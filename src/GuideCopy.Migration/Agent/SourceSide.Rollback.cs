using GuideCopy.Migration.Control;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using LibvirtSharp;
using LibvirtSharp.Native;

namespace GuideCopy.Migration.Agent;

// Before the commit point: the source resumes (an abort, or the agent stopping).
public sealed partial class SourceSide
{
    /// <summary>
    /// Rollback: stop serving and resume the untouched source (QEMU resumes from 'postmigrate').
    /// Refused once the commit decision is taken: the VM runs on the destination.
    /// </summary>
    private int _rollingBack;

    public void Abort(string why)
    {
        lock (_decision)
        {
            if (Stage.IsCommitted())
            {
                throw new AgentException($"migration {Id} is committed: {Domain} runs on the destination and the source will not resume; the transfer goes on (follow it with 'guidecopy job {Id}')");
            }

            if (Entry is not null && Stage != MigrationStage.RolledBack)
            {
                Record(Entry with { Stage = MigrationStage.RolledBack, Note = why });
            }
        }

        if (Interlocked.Exchange(ref _rollingBack, 1) == 1)
        {
            return; // an abandon's rollback and the controller's can cross: the first one resumes
        }

        _saved.Set();
        SettleGuideStart();
        _guide?.Stop("rolled back");
        _server?.Stop();
        try
        {
            if (ResumeHere())
            {
                Log($"{Id}: rolled back ({why}): source resumed");
            }
        }
        finally
        {
            FrozenRamLink.Release(Entry);
            Dispose();
        }
    }

    /// <summary>
    /// The destination destroyed its copy before its QEMU had the whole device state: that copy
    /// never ran, and never can. The released commit sends the stream's last byte only after
    /// journaling Committed, so a committed source may still be the only copy (its agent died
    /// between the record and the byte, or the destination's load failed): it takes the VM
    /// back. The decision is journaled here; the resume follows once the answer went out.
    /// </summary>
    private bool Abandoned()
    {
        lock (_decision)
        {
            if (Stage == MigrationStage.Completed || (Stage.IsCommitted() && (Entry!.SourceRemoved || Entry.SourceQemuStopped)))
            {
                return false;
            }

            if (Stage != MigrationStage.RolledBack)
            {
                // Resumed before it is journaled and answered: an agent that dies in between
                // still finds Committed, serves again, and hears the destination's abandon again
                // (asked until answered); journaled first, a death here would leave it paused.
                ResumeHere();
                Record(Entry! with { Stage = MigrationStage.RolledBack, Note = "the destination gave up its copy before it ran (it never had the whole device state)" });
                Log($"{Id}: the destination gave up its copy before it ran: {Domain} runs here again");
            }

            return true;
        }
    }

    /// <summary>
    /// The paused source copy runs again, x-ignore-shared and suppress-vmdesc off first (left on,
    /// a later libvirt migration of this VM would carry no RAM). False when it was not paused.
    /// </summary>
    private bool ResumeHere()
    {
        _conn ??= Connection.Open(Options.LibvirtUri);
        using var dom = Domain.Length > 0 ? _conn.TryLookupDomain(Domain) : null;
        if (dom is { IsActive: true })
        {
            DeviceStateTransfer.DisarmCapabilities(dom);
        }

        if (dom is not null && dom.State.State == virDomainState.VIR_DOMAIN_PAUSED)
        {
            dom.Resume();
            return true;
        }

        return false;
    }

    /// <summary>
    /// The agent stops (SIGTERM, systemctl stop/restart). A committed migration goes on in the
    /// next agent (its journal entry and the frozen RAM link stay); anything earlier rolls back.
    /// </summary>
    public void Shutdown()
    {
        if (Stage.IsCommitted() && Stage != MigrationStage.Completed)
        {
            Log($"{Id}: agent stopping mid-transfer; the next agent serves {Entry!.FrozenRam} again");
            _guide?.Stop("agent stopping");
            Dispose();
            return;
        }

        if (Stage != MigrationStage.Completed)
        {
            try
            {
                Abort("the agent stopped before the commit point");
            }
            catch (AgentException e)
            {
                Log(e.Message);
            }
        }
        else
        {
            _cleanup?.Wait(TimeSpan.FromSeconds(30));
            _disposal?.Wait(TimeSpan.FromSeconds(30));
        }
    }
}
