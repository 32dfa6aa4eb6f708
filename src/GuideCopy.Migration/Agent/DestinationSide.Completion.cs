using System.Text.Json;
using GuideCopy.MemoryPlane;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Journal;
using GuideCopy.Transport;

namespace GuideCopy.Migration.Agent;

// After the commit point: every page in, the definition persisted, "Completed" journaled, the source released.
public sealed partial class DestinationSide
{
    /// <summary>After the commit point: when every page is in, finish here and release the source, controller or not.</summary>
    private void StartCompletion()
    {
        lock (_lock)
        {
            _completion ??= Task.Run(CompleteAsync);
        }
    }

    private async Task CompleteAsync()
    {
        var paging = _paging ?? throw new AgentException("no pager");
        PagerCounters stats;
        try
        {
            stats = await paging;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            lock (_lock)
            {
                Record(Entry! with { Stage = MigrationStage.Failed, Note = $"pager failed: {e.Message}" });
            }

            throw;
        }

        if (_stop.IsCancellationRequested)
        {
            return; // the agent stops; the next one takes over
        }

        var status = LiveStatus(done: true);
        if (stats.Outcome != InstallOutcome.Completed)
        {
            lock (_lock)
            {
                Record(Entry! with { Stage = MigrationStage.Failed, Note = $"pager ended with {stats.Outcome} (the destination QEMU exited?)" });
            }

            _final = status with { Done = false, Stage = nameof(MigrationStage.Failed) };
            AgentMetrics.DestinationFinished(_final.Pages);
            return;
        }

        if (!string.IsNullOrEmpty(Entry!.PersistentXml))
        {
            // Defining the same name and UUID makes the running transient domain persistent,
            // with the source's own configuration (no -incoming, no shim) for its next boot.
            using var defined = _conn!.DefineDomain(Entry.PersistentXml);
        }

        var final = status with { Stage = nameof(MigrationStage.Completed) };
        lock (_lock)
        {
            Record(Entry with { Stage = MigrationStage.Completed, Result = JsonSerializer.SerializeToNode(final, ControlChannel.Json)!.AsObject() });
        }

        // Everything of ours on this host goes before anyone hears "done" (work dir, shim socket).
        Dispose();
        _final = final;
        AgentMetrics.DestinationFinished(final.Pages);
        Log($"{Id}: complete: {status.Pages.DonePages} pages, {status.Pages.Faults} faults");
        _release = Task.Run(ReleaseSource);
        await _release;
    }

    /// <summary>Nothing of this migration is left to do here: ended, cleaned up, the source told (or given up on).</summary>
    public bool Settled => Stage.IsFinal() && _completion is null or { IsCompleted: true } && _release is null or { IsCompleted: true };

    /// <summary>Tells the source every page is in (it then destroys its copy); retried, for at most <see cref="AgentOptions.SourceReleaseSeconds"/>.</summary>
    private void ReleaseSource()
    {
        var deadline = DateTime.UtcNow.AddSeconds(Options.SourceReleaseSeconds);
        var source = LaneEndpoint.Parse(Entry!.PageServer!);
        int attempt = 0;
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                SourceControl.ReportDone(source, MigrationKey, ProtectionOf(Entry), Entry.SessionId, 3000);
                lock (_lock)
                {
                    Record(Entry with { SourceReleased = true });
                }

                Log($"{Id}: the source was told to remove its copy");
                return;
            }
            catch (IOException e)
            {
                if (DateTime.UtcNow > deadline)
                {
                    Lines.Warning($"{Id}: could not tell the source that every page is in ({e.Message}); its paused copy stays until 'guidecopy job {Id}' or its agent is asked");
                    return;
                }

                if (attempt++ % 10 == 0)
                {
                    Log($"{Id}: releasing the source: {e.Message}; trying again");
                }

                _stop.Token.WaitHandle.WaitOne(Math.Min(5000, 200 * attempt));
            }
        }
    }

    /// <summary>The controller's wait for the end: returns once this side completed (or failed) on its own.</summary>
    public async Task<DestinationStatus> FinishAsync(CancellationToken ct)
    {
        if (_recovery is not null)
        {
            await _recovery.WaitAsync(ct);
        }

        if (_completion is null && !Stage.IsFinal())
        {
            throw new AgentException($"migration {Id} is {Stage} here: not committed");
        }

        if (_completion is not null)
        {
            await _completion.WaitAsync(ct);
        }

        return Status();
    }
}
