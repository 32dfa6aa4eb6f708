using System.Text.Json;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Journal;
using LibvirtSharp;
using LibvirtSharp.Native;

namespace GuideCopy.Migration.Agent;

// After the commit point: "Completed" journaled when the destination has every page, then the source copy destroyed.
public sealed partial class SourceSide
{
    /// <summary>The destination has every page: record it, then destroy the source copy (not on the server's thread).</summary>
    private void OnDestinationDone()
    {
        lock (_decision)
        {
            if (Stage == MigrationStage.Completed || !Stage.IsCommitted())
            {
                return;
            }

            _result = CollectResult("migration complete");
            Record(Entry! with { Stage = MigrationStage.Completed, Result = JsonSerializer.SerializeToNode(_result, ControlChannel.Json)!.AsObject() });
            Log($"{Id}: the destination has every page");
        }
    }

    private SourceFinishResult CollectResult(string guideReason)
    {
        SettleGuideStart();
        var guideStats = _guide?.Stop(guideReason);
        return new SourceFinishResult(_server?.Counters ?? default, guideStats);
    }

    /// <summary>
    /// The controller's view of the end: the counters of the source's part. Idempotent; the
    /// source finishes by itself when the destination reports every page in, and this only
    /// waits for that (or, with an older destination, drives it).
    /// </summary>
    public SourceFinishResult Finish()
    {
        if (Stage == MigrationStage.Committed)
        {
            // The controller saw every page in at the destination before its Done reached us.
            OnDestinationDone();
        }

        if (Stage != MigrationStage.Completed)
        {
            throw new AgentException($"migration {Id} is {Stage} on the source: nothing to finish");
        }

        StartCleanup();
        _cleanup!.Wait(TimeSpan.FromSeconds(60));
        return _result ?? Entry!.Result.Deserialize<SourceFinishResult>(ControlChannel.Json)
            ?? new SourceFinishResult(default);
    }

    /// <summary>
    /// Destroys the source copy once, whoever asks first (the destination's Done, or the
    /// controller's finish); the work dir follows once the guide's QEMU is gone too. The finish
    /// waits for the copy only: a TCG guide's libvirt destroy takes ~1.8 s here, and the
    /// migration is over without it (the agent keeps the side until it is gone: <see cref="Settled"/>).
    /// </summary>
    private void StartCleanup()
    {
        lock (_decision)
        {
            _cleanup ??= Task.Run(async () =>
            {
                if (_stopQemu is { } stopping)
                {
                    await stopping; // its libvirt destroy first: the undefine below then finds it shut off
                }

                DestroySourceCopy();
            });
            _disposal ??= _cleanup.ContinueWith(_ => Dispose(), TaskScheduler.Default);
        }
    }

    private Task? _disposal;

    private Task? _stopQemu;

    /// <summary>
    /// The destination's copy runs (its push lane came up after its resume): the paused source
    /// QEMU can never be resumed again (an abandon is refused from here on), so it goes now, while
    /// the pages still move, instead of at the end: libvirt's destroy of a TCG QEMU takes ~1.8 s
    /// here, which the migration's end no longer waits for. The frozen RAM is a link of its own
    /// and stays served; the definition moves at the end.
    /// </summary>
    private void DestinationRuns()
    {
        lock (_decision)
        {
            if (Stage != MigrationStage.Committed || _stopQemu is not null || _cleanup is not null || Entry!.SourceQemuStopped)
            {
                return;
            }

            Record(Entry with { SourceQemuStopped = true });
            _stopQemu = Task.Run(StopSourceQemu);
        }
    }

    private void StopSourceQemu()
    {
        try
        {
            _conn ??= Connection.Open(Options.LibvirtUri);
            using var dom = _conn.TryLookupDomain(Domain);
            if (dom is { IsActive: true } && dom.State.State == virDomainState.VIR_DOMAIN_PAUSED)
            {
                var sw = System.Diagnostics.Stopwatch.StartNew();
                dom.Destroy();
                Log($"{Id}: the destination runs: source QEMU of {Domain} destroyed in {sw.Elapsed.TotalMilliseconds:0} ms while the pages move");
            }
        }
        catch (LibvirtException e)
        {
            Log($"{Id}: could not destroy the paused source QEMU early: {e.LibvirtMessage}; it goes at the end");
        }
    }

    /// <summary>Nothing of this migration is left to do here: ended, and its source copy (if any) removed.</summary>
    public bool Settled => Stage.IsFinal() && (Stage != MigrationStage.Completed || _disposal is { IsCompleted: true });

    private void DestroySourceCopy()
    {
        _server?.Stop();
        if (Entry is { SourceRemoved: false })
        {
            try
            {
                _conn ??= Connection.Open(Options.LibvirtUri);
                using var dom = _conn.TryLookupDomain(Domain);
                // The copy we froze is paused (or shut off, if its QEMU died); a running domain of
                // that name is not it (the VM may have come back here since).
                var state = dom?.State.State;
                if (dom is not null && state is virDomainState.VIR_DOMAIN_PAUSED or virDomainState.VIR_DOMAIN_SHUTOFF or virDomainState.VIR_DOMAIN_CRASHED)
                {
                    if (dom.IsActive)
                    {
                        dom.Destroy();
                    }

                    bool undefine = Entry.Persistent && dom.IsPersistent && !Entry.KeepDefinition;
                    if (undefine)
                    {
                        dom.Undefine(virDomainUndefineFlagsValues.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM);
                    }

                    Log($"{Id}: source domain destroyed{(undefine ? " and undefined" : Entry.KeepDefinition && dom.IsPersistent ? "; its definition kept (shut off)" : "")}");
                }
                else if (dom is not null)
                {
                    Log($"{Id}: left {Domain} alone: it is {state}, not the paused copy this migration froze");
                }

                FrozenRamLink.Release(Entry);
                Record(Entry with { SourceRemoved = true });
            }
            catch (LibvirtException e)
            {
                Lines.Error($"{Id}: could not remove the source copy of {Domain}: {e.LibvirtMessage}; remove it with 'virsh destroy {Domain}' (the VM runs on the destination)");
            }
        }

    }
}
