using System.Diagnostics;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using LibvirtSharp;

namespace GuideCopy.Migration.Host;

public static partial class DeviceStateTransfer
{
    /// <summary>A source QEMU ready to write its device state to the agent (<see cref="ArmSave"/>).</summary>
    public sealed class ArmedSave(LibvirtSharp.Domain domain, string socketPath, Socket listener) : IDisposable
    {
        /// <summary>
        /// Saves the device state of the paused domain, handing each piece to <paramref name="forward"/>
        /// as QEMU writes it, and returns the whole (the guide loads it too). Afterwards QEMU is in
        /// 'postmigrate' and can still be resumed (rollback): the RAM file is untouched.
        /// </summary>
        public async Task<byte[]> SaveAsync(Action<ReadOnlyMemory<byte>> forward, TimeSpan timeout, CancellationToken ct)
        {
            Qmp(domain, $$$"""{"execute":"migrate","arguments":{"uri":"unix:{{{socketPath}}}"}}""");
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(timeout);
            using var conn = await listener.AcceptAsync(cts.Token);
            using var whole = new MemoryStream();
            byte[] buffer = new byte[64 * 1024];
            int n;
            while ((n = await conn.ReceiveAsync(buffer, SocketFlags.None, cts.Token)) > 0)
            {
                forward(buffer.AsMemory(0, n));
                whole.Write(buffer, 0, n);
            }

            return whole.ToArray();
        }

        /// <summary>QEMU's own verdict on the save (the stream may end without it: a failed save closes it too).</summary>
        public Task ConfirmAsync(TimeSpan timeout, CancellationToken ct) => WaitForMigrationStatus(domain, "completed", timeout, ct);

        /// <summary>Rollback: x-ignore-shared off again, so a later libvirt migration of the resumed VM carries its RAM.</summary>
        public void Disarm() => DisarmCapabilities(domain);

        public void Dispose()
        {
            listener.Dispose();
            File.Delete(socketPath);
        }
    }
}
