using System.Diagnostics;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Journal;

namespace GuideCopy.Migration.Agent;

// The pause and the commit decision: the device state saved and streamed, then "Committed" journaled before it is told.
public sealed partial class SourceSide
{
    /// <summary>
    /// Downtime starts here: suspend; the device state (RAM excluded) streamed to the destination
    /// on its demand lane as QEMU writes it; then the page server serves the frozen RAM. Nothing
    /// here grows with RAM: the holes are looked for after the freeze, on a thread of their own.
    /// Any failure resumes the domain before the error goes back.
    /// </summary>
    public async Task<SwitchoverResult> SwitchoverAsync(SwitchoverRequest req, CancellationToken ct)
    {
        if (_server is null || _save is null || _domain is null || Stage != MigrationStage.Preflight)
        {
            throw new AgentException($"migration {Id} is not armed here ({Stage}): arm it first");
        }

        if (!_server.DemandLaneUp)
        {
            throw new AgentException($"migration {Id}: the destination's lanes are not connected to the page server: nothing was paused");
        }

        // Journaled before the suspend: an agent that dies from here on finds the entry and
        // resumes the domain (nothing was decided yet).
        Record(Entry! with { Stage = MigrationStage.SourcePaused, Note = null, SessionId = _server.SessionId });
        // No separate suspend: QEMU's migrate stops the vCPUs itself once nothing but device
        // state is left (migration_completion -> vm_stop_force_state(FINISH_MIGRATE)), and with
        // x-ignore-shared that is at once. So the migration's setup runs before the pause, and
        // the pause starts inside QEMU, not a libvirt round trip earlier. A migrate that fails
        // before that point leaves the VM running; after it, paused (Abort resumes it).
        var sw = Stopwatch.StartNew();
        long suspendedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        double suspendMs = 0;
        try
        {
            var server = _server;
            var timeout = TimeSpan.FromSeconds(Options.DeviceStateTimeoutSeconds);
            sw.Restart();
            byte[] state = await _save.SaveAsync(piece => server.SendDeviceState(piece.Span), timeout, ct);
            server.EndDeviceState();
            double saveMs = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            server.Freeze();
            double freezeMs = sw.Elapsed.TotalMilliseconds;
            // The destination loads meanwhile; its commit question waits for this verdict (DecideCommit).
            await _save.ConfirmAsync(timeout, ct);
            lock (_decision)
            {
                if (Stage != MigrationStage.SourcePaused)
                {
                    throw new AgentException($"migration {Id} was {Stage} during its switchover ({Entry!.Note})");
                }

                Record(Entry! with { Stage = MigrationStage.DeviceStateSaved, SuspendedAtUnixMs = suspendedAt });
            }

            _saved.Set();
            StartGuideOnPushLane(server, req, state);
            Log($"{Id}: {req.Domain} paused by its migrate; device state {state.Length} bytes streamed in {saveMs:0.0} ms (migrate to the stream's end); serving {server.PageCount} pages");
            return new SwitchoverResult(state.Length, server.PageCount, suspendedAt, Math.Round(suspendMs, 2), Math.Round(saveMs, 2), Math.Round(freezeMs, 2));
        }
        catch
        {
            Abort("the switchover failed");
            throw;
        }
    }

    /// <summary>
    /// The destination asks before it resumes. Committed is journaled before the answer goes out,
    /// so an answer once given is never taken back; a source that rolled back says so for ever.
    /// </summary>
    private bool DecideCommit()
    {
        // Asked while the source QEMU's verdict on its save may still be coming: wait for it
        // (a "rolled back" now would make the destination destroy a copy nobody rolled back).
        _saved.Wait(TimeSpan.FromSeconds(Options.DeviceStateTimeoutSeconds));
        lock (_decision)
        {
            switch (Stage)
            {
                case MigrationStage.Committed or MigrationStage.Completed:
                    return true;
                case MigrationStage.DeviceStateSaved:
                    Record(Entry! with { Stage = MigrationStage.Committed, Note = null });
                    Log($"{Id}: committed: the destination resumes; this host never resumes {Domain} again");
                    return true;
                default:
                    return false;
            }
        }
    }
}
