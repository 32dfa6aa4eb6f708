using System.Diagnostics;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using GuideCopy.Interop;
using LibvirtSharp;

namespace GuideCopy.Migration.Host;

public static partial class DeviceStateTransfer
{
    /// <summary>A source QEMU ready to write its device state to the agent (<see cref="ArmSave"/>).</summary>
    public sealed class ArmedSave(LibvirtSharp.Domain domain, string socketPath, Socket listener) : IDisposable
    {
        /// <summary>QEMU's MIGRATION events for this domain, watched from the arm on (null: libvirt refused, the verdict is asked for).</summary>
        private IDisposable? _events;

        /// <summary>Set once this save's migration reached a final status; <see cref="_final"/> holds it.</summary>
        private readonly ManualResetEventSlim _finalSeen = new();
        private volatile string? _final;

        /// <summary>When QEMU emitted its verdict's event (its own stamp) and when this process heard it, UTC: the pause's log says which of the two a slow verdict waited for.</summary>
        public DateTime? VerdictEmittedAt { get; private set; }

        /// <inheritdoc cref="VerdictEmittedAt"/>
        public DateTime? VerdictHeardAt { get; private set; }

        /// <summary>A MIGRATION event of this save's own migrate came (setup or later): a final status before it is an older migrate's.</summary>
        private volatile bool _started;
        private volatile bool _saving;

        /// <summary>
        /// Watches QEMU's MIGRATION events: QEMU emits "completed" (or "failed") as it sets the status
        /// (migrate_set_state), before migration_cleanup closes the stream, so the verdict is usually
        /// here when the stream ends, where a query-migrate through libvirt took 4-17 ms of the pause
        /// (a domain job and a monitor round trip; 2.3 ms on an idle paused QEMU).
        /// </summary>
        internal void WatchEvents(Connection connection)
        {
            try
            {
                _events = DomainEvents.OnQemuMonitorEvent(connection, domain, "MIGRATION", OnMigrationEvent);
            }
            catch (LibvirtException)
            {
                _events = null; // a libvirt without QEMU monitor events: the verdict is polled
            }
        }

        private void OnMigrationEvent(QemuMonitorEvent e)
        {
            if (!_saving || e.Details is null)
            {
                return;
            }

            string? status = JsonNode.Parse(e.Details)?["status"]?.GetValue<string>();
            if (status is "setup" or "active" or "device")
            {
                _started = true;
            }
            else if (status is "completed" or "failed" or "cancelled" && _started)
            {
                VerdictEmittedAt = e.EmittedAt.UtcDateTime;
                VerdictHeardAt = DateTime.UtcNow;
                _final = status;
                _finalSeen.Set();
            }
        }

        /// <summary>
        /// Saves the device state of the paused domain, handing each piece to <paramref name="forward"/>
        /// as QEMU writes it, and returns the whole (the guide loads it too). Afterwards QEMU is in
        /// 'postmigrate' and can still be resumed (rollback): the RAM file is untouched. Blocking:
        /// the caller is the pause's own thread (<see cref="ThreadScheduling.RunForLatency{T}"/>),
        /// which relays each piece the moment QEMU writes it, with no thread-pool hop between.
        /// </summary>
        public byte[] Save(Action<ReadOnlyMemory<byte>> forward, TimeSpan timeout, CancellationToken ct)
        {
            _saving = true;
            // The migrate's reply is not waited for before the stream is read: QEMU's migration
            // thread runs from the command on, and with x-ignore-shared it stops the vCPUs within
            // milliseconds, often before libvirtd has relayed the reply (2-6 ms here, more in a
            // slow phase). Read only after the reply, the stream (228 KB, over the unix socket's
            // ~208 KiB buffer) would hold QEMU's save back that long with the VM already paused
            // (docs/migration.md, "The pause's pieces in the report"). The reply is still heard:
            // a refused migrate ends the wait for QEMU's connection with its error.
            var migrate = Task.Run(() => Qmp(domain, $$$"""{"execute":"migrate","arguments":{"uri":"unix:{{{socketPath}}}"}}"""));
            var deadline = Stopwatch.StartNew();
            while (!listener.Poll(Micros(TimeSpan.FromMilliseconds(2)), SelectMode.SelectRead))
            {
                ct.ThrowIfCancellationRequested();
                if (migrate.IsFaulted)
                {
                    migrate.GetAwaiter().GetResult(); // throws the refusal
                }

                if (deadline.Elapsed > timeout)
                {
                    throw new TimeoutException($"QEMU did not connect to its device-state socket within {timeout.TotalSeconds:0} s");
                }
            }

            using var conn = listener.Accept();
            // A cancelled switchover (the controller gave up) ends the blocked receive.
            using var cancel = ct.Register(conn.Dispose);
            using var whole = new MemoryStream();
            byte[] buffer = new byte[64 * 1024];
            while (true)
            {
                var left = timeout - deadline.Elapsed;
                if (left <= TimeSpan.Zero || !conn.Poll(Micros(left), SelectMode.SelectRead))
                {
                    throw new TimeoutException($"QEMU's device state did not end within {timeout.TotalSeconds:0} s ({whole.Length} bytes came)");
                }

                int n = conn.Receive(buffer);
                if (n == 0)
                {
                    _streamEndedAt = Stopwatch.GetTimestamp();
                    // Not waited for here either: its reply may still be on its way through
                    // libvirtd, and the verdict says how the save ended. A failure is observed.
                    if (migrate.IsFaulted)
                    {
                        migrate.GetAwaiter().GetResult();
                    }

                    _ = migrate.ContinueWith(t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
                    return whole.ToArray();
                }

                forward(buffer.AsMemory(0, n));
                whole.Write(buffer, 0, n);
            }
        }

        /// <summary>
        /// QEMU's own verdict on the save (the stream may end without it: a failed save closes it
        /// too). From its MIGRATION event when that comes within <see cref="EventGrace"/> of the
        /// stream's end, asked for (query-migrate) otherwise. Blocking, as <see cref="Save"/>.
        /// Returns where it came from ("event" or "query").
        /// </summary>
        public string Confirm(TimeSpan timeout, CancellationToken ct)
        {
            // The grace counts from the stream's end: the caller may have journaled meanwhile.
            var grace = EventGrace - Stopwatch.GetElapsedTime(_streamEndedAt);
            if (_events is not null && _finalSeen.Wait(grace > TimeSpan.Zero ? grace : TimeSpan.Zero, ct))
            {
                if (_final == "completed")
                {
                    return "event";
                }

                throw new InvalidOperationException($"QEMU device-state migration {_final}: {Status(domain, out string? why) ?? _final}, {why}");
            }

            WaitForMigrationStatusBlocking(domain, "completed", timeout, ct);
            return "query";
        }

        /// <summary><see cref="Stopwatch"/> timestamp of the stream's end (QEMU closed its socket).</summary>
        private long _streamEndedAt;

        /// <summary>How long after the stream's end the verdict's event is waited for before it is asked for (the event came 1.3-8 ms after it in 6 lab hops, 33 ms in a slow phase).</summary>
        private static readonly TimeSpan EventGrace = TimeSpan.FromMilliseconds(20);

        /// <summary>Rollback: x-ignore-shared off again, so a later libvirt migration of the resumed VM carries its RAM.</summary>
        public void Disarm() => DisarmCapabilities(domain);

        public void Dispose()
        {
            _events?.Dispose();
            listener.Dispose();
            File.Delete(socketPath);
        }
    }
}
