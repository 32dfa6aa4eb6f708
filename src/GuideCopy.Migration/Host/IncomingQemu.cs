using GuideCopy.MemoryPlane;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Definitions;
using LibvirtSharp;
using LibvirtSharp.Native;

namespace GuideCopy.Migration.Host;

/// <summary>
/// A QEMU that waits for device state (<c>-incoming defer</c>), started paused through libvirt
/// with the shim, and the userfaultfd its shim hands over. Used for the destination and the guide.
/// </summary>
public static class IncomingQemu
{
    /// <summary>
    /// Creates the transient domain and takes its uffd. QEMU maps its RAM during start-up and the
    /// shim holds it in mmap until acked, so the create call only returns after the ack: it runs
    /// beside the accept. QEMU in 'inmigrate' does not touch guest RAM (a fresh tmpfs file stays
    /// empty until the device state loads), so whoever serves the faults may start later: a fault
    /// that did come would wait in the uffd queue.
    /// </summary>
    public static async Task<(LibvirtSharp.Domain Domain, ShimRegistration Registration)> StartPausedAsync(
        Connection conn, string migratableXml, Func<string, string> finishXml, AgentOptions options, string shimSocket,
        ShimListener listener, string what, CancellationToken ct)
    {
        string xml = finishXml(DestinationXml.ForIncoming(migratableXml,
            new DestinationXml.ShimSettings(options.ShimLibrary, options.RamDir.TrimEnd('/') + "/", shimSocket)));
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        wait.CancelAfter(TimeSpan.FromSeconds(options.ShimTimeoutSeconds));
        var registered = listener.AcceptAsync(wait.Token);
        var create = Task.Run(() => conn.CreateTransient(xml, virDomainCreateFlags.VIR_DOMAIN_START_PAUSED), ct);
        if (await Task.WhenAny(registered, create) == create && create.IsFaulted)
        {
            throw new AgentException($"{what} QEMU did not start: {Reason(create.Exception!.InnerException!)}");
        }

        ShimRegistration registration;
        try
        {
            registration = await registered;
        }
        catch (OperationCanceledException)
        {
            throw new AgentException($"the {what} QEMU's shim did not hand over its userfaultfd within {options.ShimTimeoutSeconds} s (is LD_PRELOAD allowed by the host's security driver?)");
        }

        registration.Ack();
        try
        {
            return (await create, registration);
        }
        catch (Exception e)
        {
            registration.Dispose();
            throw new AgentException($"{what} QEMU did not start: {Reason(e)}");
        }
    }

    private static string Reason(Exception e) => e is LibvirtException le ? le.LibvirtMessage : e.Message;
}
