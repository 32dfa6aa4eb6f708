using System.Diagnostics;
using GuideCopy.Interop;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using GuideCopy.Transport;

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
    public Task<SwitchoverResult> SwitchoverAsync(SwitchoverRequest req, CancellationToken ct) =>
        // From the migrate to the release every step waits on QEMU, libvirt or the journal: on a
        // thread of its own at the demand path's SCHED_FIFO priority, no step waits for the CPU.
        ThreadScheduling.RunForLatency("pause", Options.DemandRealtimePriority, () => Switchover(req, ct));

    private SwitchoverResult Switchover(SwitchoverRequest req, CancellationToken ct)
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
        // Code compiled during the pause, on any thread (PausePathPrecompiler's purpose): logged with the pause.
        var jitBefore = System.Runtime.JitInfo.GetCompilationTime();
        long suspendedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        double suspendMs = 0;
        var timeout = TimeSpan.FromSeconds(Options.DeviceStateTimeoutSeconds);
        var relay = new HeldLastByte(_server, hold: req.ReleaseCommit);
        bool committing = false;
        try
        {
            var server = _server;
            sw.Restart();
            byte[] state = _save.Save(relay.Forward, timeout, ct);
            if (!req.ReleaseCommit)
            {
                server.EndDeviceState();
            }

            double saveMs = sw.Elapsed.TotalMilliseconds;
            var endedAt = DateTime.UtcNow;
            sw.Restart();
            server.Freeze();
            double freezeMs = sw.Elapsed.TotalMilliseconds;
            if (req.ReleaseCommit)
            {
                // Journaled while QEMU's verdict comes (its event is heard on libvirt's event thread).
                CheckCommittable(req, relay);
                committing = true;
                RecordCommitted(suspendedAt);
            }

            // The destination loads meanwhile; its commit question waits for this verdict (DecideCommit).
            double recordedMs = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            string verdictBy = _save.Confirm(timeout, ct);
            if (Options.FailVerdict)
            {
                throw new AgentException($"QEMU's verdict on the save of {Domain} taken as failed (Agent:FailVerdict, fault injection): not committing, the source resumes");
            }

            double verdictMs = sw.Elapsed.TotalMilliseconds;
            var verdictAt = DateTime.UtcNow;
            double commitMs = 0;
            // Before the release: the destination's push lane, which starts the guide, can come at once after it.
            StartGuideOnPushLane(req, state);
            if (req.ReleaseCommit)
            {
                sw.Restart();
                Release(relay);
                commitMs = sw.Elapsed.TotalMilliseconds;
            }
            else
            {
                lock (_decision)
                {
                    if (Stage != MigrationStage.SourcePaused)
                    {
                        throw new AgentException($"migration {Id} was {Stage} during its switchover ({Entry!.Note})");
                    }

                    Record(Entry! with { Stage = MigrationStage.DeviceStateSaved, SuspendedAtUnixMs = suspendedAt });
                }
            }

            var releasedAt = relay.ReleasedAt ?? DateTime.UtcNow;
            double jitMs = (System.Runtime.JitInfo.GetCompilationTime() - jitBefore).TotalMilliseconds;
            _saved.Set();
            // The pause is over: the warm verdict's scan (all of RAM's pagemap) must not hold the
            // CPU against the demand service, which runs at the same SCHED_FIFO priority.
            ThreadScheduling.BackToFair();
            long warmStale = -1;
            try
            {
                warmStale = SendWarmVerdict();
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                // Committed or not, the switchover itself succeeded; the destination asks again on its next demand lane.
                Log($"{Id}: the warm verdict did not go: {e.Message}");
            }
            Log($"{Id}: {req.Domain} paused by its migrate; device state {state.Length} bytes streamed in {saveMs:0.0} ms (migrate to the stream's end)" +
                (req.ReleaseCommit ? $"; Committed journaled in {_recordMs:0.0} ms" : "") +
                $"; then QEMU's verdict waited for {verdictMs:0.0} ms ({verdictBy})" +
                (req.ReleaseCommit ? $"; its last byte released {commitMs:0.0} ms after" : "") + $"; serving {server.PageCount} pages; JIT in the pause {jitMs:0.0} ms" +
                (warmStale >= 0 ? $"; warm verdict: {warmStale} stale" : "") +
                $"; by the clock: stream end {endedAt:HH:mm:ss.ffffff}, verdict emitted {_save.VerdictEmittedAt:HH:mm:ss.ffffff} heard {_save.VerdictHeardAt:HH:mm:ss.ffffff} known {verdictAt:HH:mm:ss.ffffff}, released {releasedAt:HH:mm:ss.ffffff}");
            return new SwitchoverResult(state.Length, server.PageCount, suspendedAt, Math.Round(suspendMs, 2), Math.Round(saveMs, 2), Math.Round(freezeMs, 2),
                req.ReleaseCommit, Math.Round(commitMs, 2), warmStale, Math.Round(recordedMs - freezeMs + verdictMs, 2), SwitchoverResult.UnixMicros(endedAt), req.ReleaseCommit ? SwitchoverResult.UnixMicros(releasedAt) : 0);
        }
        catch when (req.ReleaseCommit && !relay.Released)
        {
            // Nothing has left this host that lets the destination run: Committed, if it was
            // journaled before the verdict, is taken back before the rollback.
            if (committing)
            {
                TakeBackUnreleasedCommit();
            }

            Abort("the switchover failed");
            throw;
        }
        catch when (!Stage.IsCommitted())
        {
            Abort("the switchover failed");
            throw;
        }
    }

    /// <summary>
    /// The released commit's checks, on the whole stream and before anything is journaled: the
    /// stream ends in QEMU_VM_EOF (the byte held back), and the pause is within --max-downtime.
    /// </summary>
    private void CheckCommittable(SwitchoverRequest req, HeldLastByte relay)
    {
        if (relay.Held != DeviceStateTransfer.QemuVmEof)
        {
            throw new AgentException($"the device state of {Domain} does not end in QEMU_VM_EOF (last byte {relay.Held}): not committing, the source resumes " +
                                     "(a QEMU that writes a description after the stream although suppress-vmdesc is set?)");
        }

        double pausedMs = Stopwatch.GetElapsedTime(relay.FirstPieceAt).TotalMilliseconds;
        if (req.MaxDowntimeMs > 0 && pausedMs > req.MaxDowntimeMs)
        {
            throw new AgentException($"the pause had lasted {pausedMs:0.0} ms when the device state was saved, over --max-downtime {req.MaxDowntimeMs:0} ms: " +
                                     "not committing, the source resumes (raise --max-downtime, or migrate when the host is less busy)");
        }
    }

    /// <summary>
    /// The released commit journals Committed as soon as the stream is whole, before QEMU's
    /// verdict is looked at: the verdict comes by itself meanwhile (its MIGRATION event, on
    /// libvirt's event thread), so the pause waits for the longer of the record (a file and
    /// directory fsync, 3-12 ms here) and the verdict (1.5-25 ms through libvirtd), not for their
    /// sum. Journaled before the verdict is safe because the record promises nothing by itself:
    /// the destination can run only once it has the last byte, which goes after both. A
    /// successor that finds this record without the byte sent is the case of
    /// <c>SourceAgentKilledBetweenItsCommitAndTheLastByteTakesTheVmBack</c>: the destination's
    /// load times out, it gives its copy up and says so, and this host takes the VM back.
    /// </summary>
    private double _recordMs;

    private void RecordCommitted(long suspendedAt)
    {
        lock (_decision)
        {
            if (Stage != MigrationStage.SourcePaused)
            {
                throw new AgentException($"migration {Id} was {Stage} during its switchover ({Entry!.Note})");
            }

            long t0 = Stopwatch.GetTimestamp();
            Record(Entry! with { Stage = MigrationStage.Committed, SuspendedAtUnixMs = suspendedAt, Note = null });
            _recordMs = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
    }

    /// <summary>
    /// QEMU's verdict (or a step after the stream) failed with Committed journaled and the last
    /// byte still here: the destination cannot have run, so the record goes back to SourcePaused
    /// and the usual rollback follows.
    /// </summary>
    private void TakeBackUnreleasedCommit()
    {
        lock (_decision)
        {
            if (Stage == MigrationStage.Committed)
            {
                Record(Entry! with { Stage = MigrationStage.SourcePaused, Note = "the switchover failed after the stream: the Committed record taken back before the last byte went" });
            }
        }
    }

    /// <summary>
    /// The released commit's last step: the stream's last byte (QEMU_VM_EOF) goes, and the
    /// destination QEMU, armed to start by itself, runs the moment it has loaded it. A
    /// destination that never gets it can never run (it fails its load); if it gives its copy
    /// up, it says so (<see cref="Abandoned"/>) and this source runs again.
    /// </summary>
    private void Release(HeldLastByte relay)
    {
        if (Options.StallBeforeReleaseMs > 0)
        {
            Log($"{Id}: committed; stalling {Options.StallBeforeReleaseMs} ms before the last byte (Agent:StallBeforeReleaseMs, fault injection)");
            Thread.Sleep(Options.StallBeforeReleaseMs);
        }

        relay.Release();
        Log($"{Id}: committed: the destination runs once it has loaded the last byte; this host never resumes {Domain} again unless the destination gives its copy up unrun");
    }

    /// <summary>
    /// Relays the device state to the page server as QEMU writes it, one byte behind with
    /// <c>hold</c>: the stream's last byte stays here until <see cref="Release"/>. One buffer,
    /// reused for every piece (QEMU writes a few hundred KiB in 32 KiB buffers).
    /// </summary>
    private sealed class HeldLastByte(PageServer server, bool hold)
    {
        private readonly byte[] _buffer = new byte[64 * 1024 + 1];
        private bool _holding;

        /// <summary>The byte held back (meaningful once the stream ended).</summary>
        public byte Held { get; private set; }

        /// <summary><see cref="Stopwatch"/> timestamp of the first piece: QEMU writes its header just before it stops the vCPUs.</summary>
        public long FirstPieceAt { get; private set; }

        public void Forward(ReadOnlyMemory<byte> piece)
        {
            if (FirstPieceAt == 0)
            {
                FirstPieceAt = Stopwatch.GetTimestamp();
            }

            if (!hold)
            {
                server.SendDeviceState(piece.Span);
                return;
            }

            if (piece.IsEmpty)
            {
                return;
            }

            int n = 0;
            if (_holding)
            {
                _buffer[n++] = Held;
            }

            piece.Span[..^1].CopyTo(_buffer.AsSpan(n));
            n += piece.Length - 1;
            if (n > 0)
            {
                server.SendDeviceState(_buffer.AsSpan(0, n));
            }

            Held = piece.Span[^1];
            _holding = true;
        }

        /// <summary>The last byte went (or was sent unheld): from here the destination may run.</summary>
        public bool Released { get; private set; }

        /// <summary>When the last byte and the end had been handed to the lane (UTC; the pause's breakdown).</summary>
        public DateTime? ReleasedAt { get; private set; }

        /// <summary>The last byte and the end: the destination may finish loading (and, armed so, run).</summary>
        public void Release()
        {
            Released = true;
            if (hold && _holding)
            {
                _buffer[0] = Held;
                server.SendDeviceState(_buffer.AsSpan(0, 1));
            }

            server.EndDeviceState();
            ReleasedAt = DateTime.UtcNow;
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
