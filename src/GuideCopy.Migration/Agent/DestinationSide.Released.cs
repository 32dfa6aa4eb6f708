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
        DisarmRunningCopy();
        StartCompletion();
        return at;
    }

    /// <summary>
    /// x-ignore-shared and suppress-vmdesc off on the copy that runs here, off the pause's path:
    /// left on, a later migration of this VM (ours or libvirt's) would carry no RAM. Through the
    /// load's handle, or the domain's when the load was closed (given up, or a restarted agent).
    /// </summary>
    private void DisarmRunningCopy()
    {
        if (_deviceState.Armed)
        {
            _deviceState.DisarmLater();
            return;
        }

        _ = Task.Run(() =>
        {
            if (TryLookup() is { } domain)
            {
                DeviceStateTransfer.DisarmCapabilities(domain);
            }
        });
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

        if (!GiveUpUnrunCopy($"its load failed: {failure.Message}", mayRun: true))
        {
            return RunsHere("it had the whole device state when the load was given up");
        }

        Dispose(); // the side stays listed (a step past "committing" is not aborted by the agent) until the source is told
        if (Entry is not { AbandonPending: true })
        {
            throw new AgentException($"migration {Id} rolled back here: {Entry!.Note}"); // the source rolled back first: nothing to tell it
        }

        var telling = Task.Run(() => TellSourceAbandoned());
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
            if (mayRun)
            {
                switch (RunsOrWillRun())
                {
                    case true:
                        _gaveUp = false;
                        return false;
                    case null:
                        // "Cannot tell" is not "never ran": destroying it and sending the source
                        // back to work could make two copies. The journal stays as it is, so a
                        // restarted agent asks the domain again.
                        throw new AgentException($"migration {Id}: could not tell whether the destination QEMU of {Domain} runs ({why}): " +
                                                 $"nothing destroyed, the source not told; check 'virsh domstate {Domain}' on this host");
                }
            }

            // Destroyed (and seen gone) before it is journaled and the source told: a crash in
            // between leaves an entry whose domain is gone, which a restarted agent gives up again.
            DestroyCopy();
            if (IsActive(_domain ?? TryLookup()) != false)
            {
                throw new AgentException($"migration {Id}: the destination copy of {Domain} that never ran could not be destroyed: the source not told");
            }

            lock (_lock)
            {
                if (Stage != MigrationStage.RolledBack)
                {
                    Record(Entry! with { Stage = MigrationStage.RolledBack, Note = $"the destination copy never ran: {why}", AbandonPending = !sourceRolledBack });
                }
            }

            Log($"{Id}: gave up a copy that never ran ({why})");
            _gaveUp = true;
            return true;
        }
    }

    private readonly object _giveUpLock = new();
    private bool? _gaveUp;

    /// <summary>True, false (gone: libvirt removed a transient domain whose QEMU exited), or null when libvirt cannot say.</summary>
    private static bool? IsActive(LibvirtSharp.Domain? domain)
    {
        try
        {
            return domain is { IsActive: true };
        }
        catch (LibvirtException e) when (e.Code == LibvirtSharp.Native.virErrorNumber.VIR_ERR_NO_DOMAIN)
        {
            return false;
        }
        catch (LibvirtException)
        {
            return null;
        }
    }

    private LibvirtSharp.Domain? TryLookup()
    {
        try
        {
            _conn ??= Connection.Open(Options.LibvirtUri);
            return _domain = _conn.TryLookupDomain(Domain);
        }
        catch (LibvirtException)
        {
            return _domain;
        }
    }

    /// <summary>True when libvirt says the domain runs, false when it says it does not (or it is gone), null when it cannot say.</summary>
    private bool? DomainRuns()
    {
        try
        {
            _conn ??= Connection.Open(Options.LibvirtUri);
            _domain ??= _conn.TryLookupDomain(Domain);
            return _domain is { IsActive: true } && _domain.State.State == virDomainState.VIR_DOMAIN_RUNNING;
        }
        catch (LibvirtException e) when (e.Code == LibvirtSharp.Native.virErrorNumber.VIR_ERR_NO_DOMAIN)
        {
            return false;
        }
        catch (LibvirtException e)
        {
            Log($"{Id}: could not ask libvirt whether {Domain} runs: {e.LibvirtMessage}");
            return null;
        }
    }

    /// <summary>
    /// How long the source is asked before giving up until this agent's next start: it may be
    /// down (a host restart), and until it hears the abandon its VM stays paused.
    /// </summary>
    private static readonly TimeSpan AbandonPatience = TimeSpan.FromHours(1);

    /// <summary>
    /// Tells the source this copy is gone and never ran, asking again until it answers or
    /// <see cref="AbandonPatience"/> is over; a restarted agent asks again (AbandonPending).
    /// </summary>
    private bool TellSourceAbandoned()
    {
        var entry = Entry!;
        if (entry.PageServer is null)
        {
            return true; // never armed: no source was told anything
        }

        var source = LaneEndpoint.Parse(entry.PageServer);
        var deadline = DateTime.UtcNow + AbandonPatience;
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
    private bool? RunsOrWillRun()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(Options.DeviceStateTimeoutSeconds);
        while (DateTime.UtcNow < deadline)
        {
            var runs = DomainRuns();
            if (runs == true)
            {
                return true;
            }

            var domain = _domain;
            var active = runs is null ? null : IsActive(domain);
            if (active == false)
            {
                return false; // QEMU gone: a failed load exits
            }

            if (active == true)
            {
                // Bounded: a QEMU whose load faults on a page waits for a pager this agent has
                // not started, and libvirt waits for its monitor without a timeout.
                var query = Task.Run(() => DeviceStateTransfer.IncomingStatus(domain!));
                Task.WhenAny(query, Task.Delay(TimeSpan.FromSeconds(2))).Wait();
                string? status = query.IsCompletedSuccessfully ? query.Result : null;
                _ = query.ContinueWith(t => t.Exception, TaskScheduler.Default);
                if (status is "failed" or "cancelled")
                {
                    // A failed incoming migration never starts the vCPUs; it exits next.
                    return DomainRuns() == true;
                }
            }

            Thread.Sleep(50); // 'active': the last bytes may still be loading; or libvirt could not say
        }

        return DomainRuns() == true ? true : null;
    }
}
