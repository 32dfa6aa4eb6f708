using System.Diagnostics;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using LibvirtSharp;

namespace GuideCopy.Migration.Host;

public static partial class DeviceStateTransfer
{
    /// <summary>A destination QEMU waiting for its device state (<see cref="ArmLoadAsync"/>).</summary>
    public sealed class ArmedLoad(LibvirtSharp.Domain domain, Socket socket) : IDisposable
    {
        private long _written;

        /// <summary>Bytes written into QEMU so far.</summary>
        public long Written => Interlocked.Read(ref _written);

        /// <summary>Writes a piece of the stream into QEMU (blocking: QEMU reads it as it comes).</summary>
        public void Write(ReadOnlySpan<byte> bytes)
        {
            while (bytes.Length > 0)
            {
                int n = socket.Send(bytes);
                bytes = bytes[n..];
                Interlocked.Add(ref _written, n);
            }
        }

        /// <summary>
        /// The stream is whole: waits until QEMU has loaded it. QEMU closes its end once
        /// qemu_loadvm_state returns (migration_incoming_state_destroy), so the EOF on our read
        /// side is the moment; query-migrate then says whether it loaded (runstate 'paused':
        /// libvirt started it with -S). Polled too, in case the close comes late.
        /// </summary>
        public async Task CompleteAsync(TimeSpan timeout, CancellationToken ct)
        {
            socket.Shutdown(SocketShutdown.Send);
            var deadline = Stopwatch.StartNew();
            byte[] probe = new byte[64];
            while (true)
            {
                bool closed = false;
                // The close is the moment; the status is asked for only after it (or after a
                // long wait for it). Each query-migrate is a libvirtd round trip and a monitor
                // command that QEMU's main loop runs under the BQL, on the host CPU the load and
                // the vm_start after it are using: polled every 2 ms, they fell inside the pause.
                if (socket.Poll(Micros(CloseWait), SelectMode.SelectRead))
                {
                    try { closed = socket.Receive(probe) == 0; }
                    catch (SocketException) { closed = true; }
                }

                var (status, why) = await StatusWithinAsync(domain, timeout - deadline.Elapsed, ct);
                if (status == "completed")
                {
                    return;
                }

                if (status is "failed" or "cancelled")
                {
                    throw new InvalidOperationException($"QEMU device-state load {status}: {why ?? status}");
                }

                if (deadline.Elapsed > timeout)
                {
                    throw new TimeoutException($"QEMU did not finish loading the device state in {timeout.TotalSeconds:0} s (status {status})");
                }

                ct.ThrowIfCancellationRequested();
                if (closed)
                {
                    await Task.Delay(StatusPollInterval, ct);
                }
            }
        }

        /// <summary>How long QEMU's close of the stream is waited for before its status is asked for all the same.</summary>
        private static readonly TimeSpan CloseWait = TimeSpan.FromMilliseconds(50);

        /// <summary>After the resume: x-ignore-shared off (left on, a later libvirt post-copy of this VM is refused).</summary>
        public void Disarm() => DisarmCapabilities(domain);

        public void Dispose() => socket.Dispose();
    }
}
