using System.Diagnostics;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using LibvirtSharp;

namespace GuideCopy.Migration.Host;

/// <summary>
/// Moves a domain's CPU and device state (not its RAM) through QMP, as QEMU's own migration
/// stream with the x-ignore-shared capability: RAM blocks that are shared named files are
/// left out (QEMU >= 8.1, ramblock_is_ignored), so the stream is device state only, independent of
/// RAM size (docs/tuning.md, "Device state size").
/// QEMU talks to a UNIX socket of the agent's: never an exec: URI, which libvirt's seccomp
/// sandbox (spawn=deny) answers by killing QEMU.
/// </summary>
public static partial class DeviceStateTransfer
{
    /// <summary>How often the save's and the load's status is polled while the VM is paused.</summary>
    private static readonly TimeSpan StatusPollInterval = TimeSpan.FromMilliseconds(1);

    /// <summary>A poll's timeout in microseconds (<see cref="Socket.Poll(int, SelectMode)"/>).</summary>
    private static int Micros(TimeSpan t) => (int)Math.Clamp(t.TotalMicroseconds, 0, int.MaxValue);

    private const string IgnoreShared =
        """{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"x-ignore-shared","state":true}]}}""";

    // Capabilities stay set in a QEMU: left on, a later libvirt post-copy of this VM fails
    // ("Postcopy is not compatible with ignore-shared"). So each transfer turns it off again.
    private const string IgnoreSharedOff =
        """{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"x-ignore-shared","state":false}]}}""";

    // The stream then ends in QEMU_VM_EOF itself: no JSON description of it follows
    // (qemu_savevm_state_complete_precopy_non_iterable writes one unless the machine's
    // suppress-vmdesc is set, and qemu_loadvm_state reads one unless it is). The released commit
    // holds that last byte back until the source has committed: a destination QEMU that never gets
    // it fails its load and never runs. With a description after it, QEMU would have read the EOF
    // byte already, and a description cut short is ignored (savevm.c: "It doesn't seem worth failing").
    private const string VmdescOff = """{"execute":"qom-set","arguments":{"path":"/machine","property":"suppress-vmdesc","value":true}}""";
    private const string VmdescOn = """{"execute":"qom-set","arguments":{"path":"/machine","property":"suppress-vmdesc","value":false}}""";

    /// <summary>The last byte of a whole device-state stream without its description (savevm.h: QEMU_VM_EOF).</summary>
    public const byte QemuVmEof = 0x00;

    // qmp_cont on a QEMU in 'inmigrate' only sets autostart: the incoming migration then starts
    // the vCPUs itself once the load completed (process_incoming_migration_bh -> vm_start), with
    // no monitor round trip after the last byte. libvirt follows QEMU's RESUME event.
    private const string StartWhenLoaded = """{"execute":"cont"}""";

    /// <summary>
    /// Before the pause: x-ignore-shared on and the agent's socket listening, so the pause holds
    /// only QEMU's own work (QMP migrate, the stream). QEMU runs as its own user (qemu.conf), not
    /// as the agent's root: its group, and nobody else, may connect.
    /// </summary>
    public static ArmedSave ArmSave(LibvirtSharp.Domain domain, string socketPath, uint qemuGid)
    {
        File.Delete(socketPath);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(socketPath));
            if (Mono.Unix.Native.Syscall.chown(socketPath, -1, (int)qemuGid) != 0)
            {
                throw new IOException($"chown {socketPath} to group {qemuGid}: {Mono.Unix.Native.Stdlib.GetLastError()}");
            }

            File.SetUnixFileMode(socketPath, (UnixFileMode)0b110_110_000);
            listener.Listen(1);
            Qmp(domain, IgnoreShared);
            Qmp(domain, VmdescOff);
            return new ArmedSave(domain, socketPath, listener);
        }
        catch
        {
            listener.Dispose();
            File.Delete(socketPath);
            throw;
        }
    }

    /// <summary>
    /// Before the pause: the destination QEMU (<c>-incoming defer</c>) listens for device state
    /// (migrate-incoming) and the agent is connected to it; QEMU's incoming coroutine waits for
    /// the first byte without blocking its main loop.
    /// </summary>
    /// <param name="startOnLoad">The released commit: QEMU starts the vCPUs itself the moment the load completes.</param>
    public static async Task<ArmedLoad> ArmLoadAsync(LibvirtSharp.Domain domain, string socketPath, bool startOnLoad, TimeSpan timeout, CancellationToken ct)
    {
        File.Delete(socketPath);
        Qmp(domain, IgnoreShared);
        Qmp(domain, VmdescOff);
        Qmp(domain, $$$"""{"execute":"migrate-incoming","arguments":{"uri":"unix:{{{socketPath}}}"}}""");
        if (startOnLoad)
        {
            Qmp(domain, StartWhenLoaded);
        }
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            while (true)
            {
                try
                {
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cts.Token);
                    break;
                }
                catch (SocketException) when (!cts.IsCancellationRequested)
                {
                    await Task.Delay(5, cts.Token);
                }
            }

            // QEMU has accepted: the path is of no more use (nobody else may connect to it).
            File.Delete(socketPath);
            return new ArmedLoad(domain, s);
        }
        catch
        {
            s.Dispose();
            File.Delete(socketPath);
            throw;
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
        Qmp(domain, VmdescOff); // the saving source wrote none
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
            await WaitForMigrationStatus(domain, "completed", timeout, cts.Token);
            Qmp(domain, IgnoreSharedOff);
        }
        finally
        {
            File.Delete(socketPath);
        }
    }

    /// <summary>As <see cref="WaitForMigrationStatus"/>, on the calling thread (the pause's: no thread-pool hop in it).</summary>
    private static void WaitForMigrationStatusBlocking(LibvirtSharp.Domain domain, string wanted, TimeSpan timeout, CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        while (!IsFinal(Status(domain, out string? why), why, wanted, deadline.Elapsed, timeout))
        {
            ct.ThrowIfCancellationRequested();
            Thread.Sleep(StatusPollInterval);
        }
    }

    /// <summary>True once <paramref name="status"/> is <paramref name="wanted"/>; throws on a failed migration or past <paramref name="timeout"/>.</summary>
    private static bool IsFinal(string? status, string? why, string wanted, TimeSpan elapsed, TimeSpan timeout)
    {
        if (status == wanted)
        {
            return true;
        }

        if (status is "failed" or "cancelled")
        {
            throw new InvalidOperationException($"QEMU device-state migration {status}: {why ?? status}");
        }

        if (elapsed > timeout)
        {
            throw new TimeoutException($"QEMU's device-state migration is still '{status}' after {timeout.TotalSeconds:0} s");
        }

        return false;
    }

    private static async Task WaitForMigrationStatus(LibvirtSharp.Domain domain, string wanted, TimeSpan timeout, CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        while (!IsFinal(Status(domain, out string? why), why, wanted, deadline.Elapsed, timeout))
        {
            // The answer is usually a few ms away, and each ms of poll interval can be a ms of downtime.
            await Task.Delay(StatusPollInterval, ct);
        }
    }

    /// <summary>
    /// query-migrate on the destination, bounded by <paramref name="remaining"/>. A loading QEMU that
    /// touches guest RAM (a device's post_load) faults on a page only the source can serve, holding
    /// the big QEMU lock, so its monitor stops answering; libvirt waits for a monitor reply without
    /// a timeout (qemuMonitorSend). If the source is gone, that wait never ends: the load must fail
    /// instead, so the controller's rollback can go on. The blocked call returns once the rollback
    /// destroys that QEMU.
    /// </summary>
    private static async Task<(string? Status, string? Why)> StatusWithinAsync(LibvirtSharp.Domain domain, TimeSpan remaining, CancellationToken ct)
    {
        var query = Task.Run(() => (Status(domain, out string? why), why), CancellationToken.None);
        try
        {
            // At least a second, so the last poll after the deadline still gets its answer.
            return await query.WaitAsync(remaining > TimeSpan.FromSeconds(1) ? remaining : TimeSpan.FromSeconds(1), ct);
        }
        catch (TimeoutException)
        {
            _ = query.ContinueWith(t => t.Exception, TaskScheduler.Default);
            throw new TimeoutException("QEMU's monitor did not answer while it loaded the device state: QEMU is blocked, " +
                                       "most likely on a guest page the source no longer serves (Agent:DeviceStateTimeoutSeconds)");
        }
    }

    /// <summary>query-migrate's status on a destination (its incoming migration): setup, active, completed, failed.</summary>
    public static string? IncomingStatus(LibvirtSharp.Domain domain) => Status(domain, out _);

    private static string? Status(LibvirtSharp.Domain domain, out string? why)
    {
        var reply = JsonNode.Parse(Qmp(domain, """{"execute":"query-migrate"}"""));
        why = reply?["return"]?["error-desc"]?.GetValue<string>();
        return reply?["return"]?["status"]?.GetValue<string>();
    }

    /// <summary>x-ignore-shared off and the stream's description back, on a domain that runs here (a rollback, an armed migration given up, a committed destination).</summary>
    public static void DisarmCapabilities(LibvirtSharp.Domain domain)
    {
        TryQmp(domain, IgnoreSharedOff);
        TryQmp(domain, VmdescOn);
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
