using GuideCopy.Migration.Control;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using GuideCopy.Transport;
using LibvirtSharp;
using LibvirtSharp.Native;

namespace GuideCopy.Migration.Agent;

// The released commit (docs/migration.md): this QEMU runs by itself the moment it has loaded the
// whole device state, whose last byte the source sends only once it has committed. So nothing
// here decides; what is left is to see that it ran, or to give up a copy that never ran.
public sealed partial class DestinationSide
{
    /// <summary>
    /// QEMU loaded the whole device state and started its vCPUs by itself (it was armed with
    /// 'cont' in 'inmigrate'): the source had committed before it sent the last byte. Recorded
    /// after the fact, off the pause's path.
    /// </summary>
    private long RunsHere(string how)
    {
        long at = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        _pager?.StartPush();
        lock (_lock)
        {
            Record(Entry! with { Stage = MigrationStage.Committed, ResumedAtUnixMs = at, SessionId = _pager?.SessionId is > 0 and var s ? s : Entry!.SessionId });
        }

        Log($"{Id}: committed: {Domain} runs here ({how})");
        _deviceState.DisarmLater();
        StartCompletion();
        return at;
    }

    /// <summary>
    /// The load failed with the released commit armed. If QEMU never got the whole stream it can
    /// never run: the copy goes and the source is told (it may have committed and be waiting for
    /// nobody). If it got the whole stream it runs or is about to: nothing is destroyed then.
    /// Returns the resume time when it turns out to run; throws the failure otherwise.
    /// </summary>
    private async Task<long> SettleFailedLoadAsync(Exception failure)
    {
        if (Stage == MigrationStage.RolledBack)
        {
            // Aborted meanwhile (a rollback, a lease that ran out): the abort gave the copy up.
            throw new AgentException($"migration {Id} rolled back here: {Entry!.Note}");
        }

        bool loadFailed = failure is InvalidOperationException; // QEMU said 'failed': it never started the vCPUs
        if (_deviceState.WholeStreamWritten && !loadFailed)
        {
            if (DomainRuns())
            {
                return RunsHere("it loaded the whole device state while the load was being given up");
            }

            lock (_lock)
            {
                Record(Entry! with { Stage = MigrationStage.Failed, Note = $"the destination QEMU has the whole device state but did not run ({failure.Message}): the source keeps its paused copy and frozen RAM; nothing resumes it by itself" });
            }

            throw new AgentException($"migration {Id}: {Entry!.Note}");
        }

        if (!GiveUpUnrunCopy($"its load failed: {failure.Message}", mayRun: true))
        {
            return RunsHere("it had the whole device state when the load was given up");
        }

        Dispose(); // the side stays listed (a step past "committing" is not aborted by the agent) until the source is told
        if (Entry is not { AbandonPending: true })
        {
            throw new AgentException($"migration {Id} rolled back here: {Entry!.Note}"); // the source rolled back first: nothing to tell it
        }

        var telling = Task.Run(() => TellSourceAbandoned(TimeSpan.FromMinutes(10)));
        _release = telling;
        bool told = await Task.WhenAny(telling, Task.Delay(TimeSpan.FromSeconds(10))) == telling && telling.Result;
        throw new AgentException($"the destination copy of {Domain} never ran ({failure.Message}); it is destroyed, and the source " +
                                 (told ? "runs its own again" : "is told so as soon as it answers (it keeps its copy paused meanwhile)"));
    }

    /// <summary>
    /// Destroys a copy that never ran. The incoming socket is closed first, so no byte reaches
    /// QEMU any more; with <paramref name="mayRun"/> (the source may have sent the last byte) QEMU's
    /// verdict comes next: false, and nothing destroyed, when it loaded the whole stream and runs.
    /// Journaled RolledBack, with the source still to be told unless <paramref name="sourceRolledBack"/>.
    /// Once: an abort and the failing load it causes may both get here.
    /// </summary>
    private bool GiveUpUnrunCopy(string why, bool mayRun, bool sourceRolledBack = false)
    {
        lock (_giveUpLock)
        {
            if (_gaveUp is { } decided)
            {
                return decided;
            }

            _deviceState.Dispose();
            if (mayRun && RunsOrWillRun())
            {
                _gaveUp = false;
                return false;
            }

            lock (_lock)
            {
                if (Stage != MigrationStage.RolledBack)
                {
                    Record(Entry! with { Stage = MigrationStage.RolledBack, Note = $"the destination copy never ran: {why}", AbandonPending = !sourceRolledBack });
                }
            }

            DestroyCopy();
            Log($"{Id}: gave up a copy that never ran ({why})");
            _gaveUp = true;
            return true;
        }
    }

    private readonly object _giveUpLock = new();
    private bool? _gaveUp;

    private static bool IsActive(LibvirtSharp.Domain? domain)
    {
        try
        {
            return domain is { IsActive: true };
        }
        catch (LibvirtException)
        {
            return false; // "domain not found": libvirt removed a transient domain whose QEMU exited
        }
    }

    private bool DomainRuns()
    {
        try
        {
            _conn ??= Connection.Open(Options.LibvirtUri);
            _domain ??= _conn.TryLookupDomain(Domain);
            return _domain is { IsActive: true } && _domain.State.State == virDomainState.VIR_DOMAIN_RUNNING;
        }
        catch (LibvirtException e)
        {
            Log($"{Id}: could not ask libvirt whether {Domain} runs: {e.LibvirtMessage}");
            return false;
        }
    }

    /// <summary>
    /// Tells the source this copy is gone and never ran, asking again until it answers or
    /// <paramref name="patience"/> is over; a restarted agent asks again (AbandonPending).
    /// </summary>
    private bool TellSourceAbandoned(TimeSpan patience) => TellSourceAbandoned(Entry!, patience);

    private bool TellSourceAbandoned(JournalEntry entry, TimeSpan patience)
    {
        if (entry.PageServer is null)
        {
            return true; // never armed: no source was told anything
        }

        var source = LaneEndpoint.Parse(entry.PageServer);
        var deadline = DateTime.UtcNow + patience;
        int attempt = 0;
        while (true)
        {
            if (Entry is not { AbandonPending: true })
            {
                return false; // the source rolled back by itself meanwhile (its rollback reached this side)
            }

            try
            {
                bool resumed = SourceControl.Abandon(source, MigrationKey, ProtectionOf(entry), entry.SessionId, 3000);
                Log($"{Id}: told the source the copy here never ran: {(resumed ? "it runs its own again" : "it refused (it had completed)")}");
                lock (_lock)
                {
                    if (Entry is { AbandonPending: true })
                    {
                        Record(Entry with { AbandonPending = false });
                    }
                }

                return resumed;
            }
            catch (IOException e)
            {
                if (DateTime.UtcNow > deadline)
                {
                    Log($"{Id}: the source has not heard that the copy here never ran ({e.Message}); asked again when this agent starts");
                    return false;
                }

                if (attempt++ % 10 == 0)
                {
                    Log($"{Id}: telling the source the copy here never ran: {e.Message}; asking again");
                }

                Thread.Sleep(Math.Min(2000, 100 * attempt));
            }
        }
    }

    /// <summary>
    /// A QEMU armed to start on load whose incoming socket is closed (by this agent giving it up,
    /// or by the death of the one before): it either had the whole stream (it runs, or soon: the
    /// source had committed) or fails its load. Waits for QEMU's verdict: true when the copy runs;
    /// false when it never can.
    /// </summary>
    private bool RunsOrWillRun()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(Options.DeviceStateTimeoutSeconds);
        while (DateTime.UtcNow < deadline)
        {
            if (DomainRuns())
            {
                return true;
            }

            var domain = _domain;
            if (!IsActive(domain))
            {
                return false; // QEMU gone: a failed load exits
            }

            // Bounded: a QEMU whose load faults on a page waits for a pager this agent has not
            // started, and libvirt waits for its monitor without a timeout. A QEMU that exits
            // meanwhile (its load failed) fails the query: asked again above.
            var query = Task.Run(() => DeviceStateTransfer.IncomingStatus(domain!));
            Task.WhenAny(query, Task.Delay(TimeSpan.FromSeconds(2))).Wait();
            string? status = query.IsCompletedSuccessfully ? query.Result : null;
            _ = query.ContinueWith(t => t.Exception, TaskScheduler.Default);
            if (status is null && !IsActive(domain))
            {
                return false;
            }

            if (status is "failed" or "cancelled" or "none" or null)
            {
                return DomainRuns();
            }

            Thread.Sleep(50); // 'active': the last bytes may still be loading
        }

        return DomainRuns();
    }
}
