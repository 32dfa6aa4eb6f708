using System.Net.Sockets;
using System.Text.Json.Nodes;
using LibvirtSharp;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// Moves a domain's CPU and device state (not its RAM) through QMP, as QEMU's own migration
/// stream with the x-ignore-shared capability: RAM blocks that are shared named files are
/// left out (QEMU >= 8.1, ramblock_is_ignored), so the stream is ~0.3-0.5 MB.
/// QEMU talks to a UNIX socket of the agent's: never an exec: URI, which libvirt's seccomp
/// sandbox (spawn=deny) answers by killing QEMU.
/// </summary>
public static class DeviceStateTransfer
{
    private const string IgnoreShared =
        """{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"x-ignore-shared","state":true}]}}""";

    // Capabilities stay set in a QEMU: left on, a later libvirt post-copy of this VM fails
    // ("Postcopy is not compatible with ignore-shared"). So each transfer turns it off again.
    private const string IgnoreSharedOff =
        """{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"x-ignore-shared","state":false}]}}""";

    /// <summary>
    /// Saves the device state of a paused domain. QEMU connects to a socket the agent listens
    /// on; the agent reads the stream to EOF. Afterwards QEMU is in 'postmigrate' and can still
    /// be resumed (rollback): the RAM file is untouched.
    /// </summary>
    public static async Task<byte[]> SaveAsync(LibvirtSharp.Domain domain, string socketPath, uint qemuGid, TimeSpan timeout, CancellationToken ct)
    {
        File.Delete(socketPath);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        // QEMU runs as its own user (qemu.conf), not as the agent's root: its group, and nobody else, may connect.
        if (Mono.Unix.Native.Syscall.chown(socketPath, -1, (int)qemuGid) != 0)
        {
            throw new IOException($"chown {socketPath} to group {qemuGid}: {Mono.Unix.Native.Stdlib.GetLastError()}");
        }

        File.SetUnixFileMode(socketPath, (UnixFileMode)0b110_110_000);
        listener.Listen(1);
        try
        {
            Qmp(domain, IgnoreShared);
            Qmp(domain, $$$"""{"execute":"migrate","arguments":{"uri":"unix:{{{socketPath}}}"}}""");
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(timeout);
            using var conn = await listener.AcceptAsync(cts.Token);
            using var ms = new MemoryStream();
            using (var ns = new NetworkStream(conn, ownsSocket: false))
            {
                await ns.CopyToAsync(ms, cts.Token);
            }

            await WaitForMigrationStatus(domain, "completed", cts.Token);
            return ms.ToArray();
        }
        finally
        {
            File.Delete(socketPath);
            TryQmp(domain, IgnoreSharedOff); // also when rolled back: the source resumes as it was
        }
    }

    /// <summary>
    /// Loads device state into a domain started with <c>-incoming defer</c>: QEMU listens on the
    /// socket (migrate-incoming), the agent writes the stream and waits until QEMU has loaded it
    /// (runstate 'paused'; libvirt started it with -S so it does not run on its own).
    /// </summary>
    public static async Task LoadAsync(LibvirtSharp.Domain domain, string socketPath, byte[] state, TimeSpan timeout, CancellationToken ct)
    {
        File.Delete(socketPath);
        Qmp(domain, IgnoreShared);
        Qmp(domain, $$$"""{"execute":"migrate-incoming","arguments":{"uri":"unix:{{{socketPath}}}"}}""");
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            while (true)
            {
                try
                {
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cts.Token);
                    break;
                }
                catch (SocketException) when (!cts.IsCancellationRequested)
                {
                    await Task.Delay(10, cts.Token);
                }
            }

            await s.SendAsync(state, cts.Token);
            s.Shutdown(SocketShutdown.Send);
            await WaitForMigrationStatus(domain, "completed", cts.Token);
            Qmp(domain, IgnoreSharedOff);
        }
        finally
        {
            File.Delete(socketPath);
        }
    }

    private static async Task WaitForMigrationStatus(LibvirtSharp.Domain domain, string wanted, CancellationToken ct)
    {
        while (true)
        {
            var reply = JsonNode.Parse(Qmp(domain, """{"execute":"query-migrate"}"""));
            string? status = reply?["return"]?["status"]?.GetValue<string>();
            if (status == wanted)
            {
                return;
            }

            if (status is "failed" or "cancelled")
            {
                string why = reply?["return"]?["error-desc"]?.GetValue<string>() ?? status;
                throw new InvalidOperationException($"QEMU device-state migration {status}: {why}");
            }

            await Task.Delay(5, ct);
        }
    }

    private static void TryQmp(LibvirtSharp.Domain domain, string command)
    {
        try
        {
            Qmp(domain, command);
        }
        catch (Exception e) when (e is InvalidOperationException or LibvirtException)
        {
            // A migration still running (a failed save) refuses capability changes; nothing to undo then.
        }
    }

    /// <summary>Runs one QMP command through libvirt; a QMP error becomes an exception with QEMU's text.</summary>
    public static string Qmp(LibvirtSharp.Domain domain, string command) => Qemu.Qmp.Run(domain, command).ToJsonString();
}
