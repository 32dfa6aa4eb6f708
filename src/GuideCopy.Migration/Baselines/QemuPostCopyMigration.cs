using System.Diagnostics;
using System.Text.Json.Nodes;
using GuideCopy.Migration.Definitions;
using GuideCopy.Migration.Qemu;
using LibvirtSharp;
using LibvirtSharp.Native;

namespace GuideCopy.Migration.Baselines;

/// <summary>
/// QEMU's own post-copy, switched at once, driven over QMP with libvirt starting both QEMUs:
/// the one way to run post-copy with QEMU's <c>postcopy-preempt</c> channel under libvirt 11.3,
/// whose migration API has no flag or parameter for it (libvirt-api.xml). It also turns on
/// <c>postcopy-blocktime</c> on the destination, so the report gets the time the destination's
/// vCPUs spent blocked on missing pages: the same "stall" figure our pager reports.
/// <para>
/// Sequence: a transient copy of the domain starts paused on the destination with
/// <c>-incoming defer</c> (the same XML as our destination, without the shim);
/// <c>migrate-incoming tcp:ADDR:0</c> (QEMU picks the port, query-migrate names it);
/// <c>cont</c> while it is still "inmigrate" makes QEMU start the VM by itself the moment
/// post-copy switches (qmp_cont sets autostart; loadvm_postcopy_handle_run_bh then runs
/// vm_start), so the pause is not stretched by this controller's polling; the source migrates
/// with postcopy-ram (+ postcopy-preempt) and is switched with migrate-start-postcopy as soon as
/// QEMU accepts it. Before the switch a failure cancels the migration (the source never stopped)
/// and destroys the copy; after it the destination is the VM.
/// </para>
/// </summary>
public static class QemuPostCopyMigration
{
    /// <param name="destinationAddress">The destination host's address on the migration link (QEMU listens there).</param>
    public static BaselineResult Run(Connection source, Connection destination, string domainName, string destinationAddress,
        BaselineOptions options, long bandwidthBytesPerSecond, CancellationToken cancellation = default)
    {
        bool preempt = options.Mode == BaselineMode.QemuPostCopyPreempt;
        using var domain = source.LookupDomain(domainName);
        RefuseUnlessMovable(domain, destination, domainName);

        bool persistent = domain.IsPersistent;
        string? inactiveXml = persistent
            ? DestinationXml.WithoutOurAdditions(domain.GetXml(virDomainXMLFlags.VIR_DOMAIN_XML_INACTIVE | virDomainXMLFlags.VIR_DOMAIN_XML_SECURE))
            : null;
        string migratable = DestinationXml.WithoutOurAdditions(domain.GetXml(virDomainXMLFlags.VIR_DOMAIN_XML_MIGRATABLE));
        string incomingXml = DestinationXml.ForIncoming(migratable, shim: null);

        using var pause = new GuestPauseWatch(source, domain, destination, domainName);

        var clock = Stopwatch.StartNew();
        var incoming = destination.CreateTransient(incomingXml, virDomainCreateFlags.VIR_DOMAIN_START_PAUSED);
        TimeSpan? switchedAt = null;
        try
        {
            try
            {
                string[] caps = preempt ? ["postcopy-ram", "postcopy-preempt"] : ["postcopy-ram"];
                string port = ListenForIncoming(incoming, caps, destinationAddress);
                StartOutgoing(domain, caps, bandwidthBytesPerSecond, destinationAddress, port);
                SwitchToPostCopy(domain);
                switchedAt = clock.Elapsed;
            }
            catch (Exception e) when (e is InvalidOperationException or LibvirtException)
            {
                // Before the switch the source still runs the whole guest: cancel and drop the copy.
                RollBack(domain, incoming);
                throw;
            }

            // After the switch: wait for the last page; the source cannot take the VM back.
            var timeout = options.Timeout ?? BaselineOptions.DefaultTimeout;
            JsonNode sourceInfo = WaitForLastPage(domain, domainName, clock, timeout, cancellation);

            var destinationInfo = Qmp.QueryMigrate(incoming);
            // Leave no post-copy setting behind in the VM's QEMU: libvirt sets only the
            // capabilities it knows, and a later migration with postcopy-preempt still on but
            // postcopy-ram off is refused by QEMU.
            ResetCapabilities(incoming);

            HandOverDefinition(domain, destination, inactiveXml, persistent, options.KeepSourceDefinition);

            // Total time as for every mode: to the last page in and the source gone.
            clock.Stop();

            TimeSpan? observedPause = pause.Observed();
            return QueryMigrateFigures.Result(options.Mode, domainName, clock.Elapsed, sourceInfo, destinationInfo, observedPause, switchedAt, preempt) with
            {
                PauseByQemuClocks = pause.ObservedByQemuClocks(),
            };
        }
        finally
        {
            incoming.Dispose();
        }
    }

    private static void RefuseUnlessMovable(Domain domain, Connection destination, string domainName)
    {
        if (!domain.IsActive)
        {
            throw new InvalidOperationException($"domain '{domainName}' is not running; a live migration needs a running guest");
        }

        using (var clash = destination.TryLookupDomain(domainName))
        {
            if (clash is not null)
            {
                throw new InvalidOperationException($"the destination already has a domain named '{domainName}'; remove it first");
            }
        }
    }

    /// <summary>
    /// Sets the destination QEMU listening (capabilities with blocktime, migrate-incoming) and
    /// armed to start the VM at the switch; returns the port it listens on.
    /// </summary>
    private static string ListenForIncoming(Domain incoming, string[] caps, string destinationAddress)
    {
        Qmp.Run(incoming, Qmp.SetCapabilities(true, [.. caps, "postcopy-blocktime"]));
        Qmp.Run(incoming, $$$"""{"execute":"migrate-incoming","arguments":{"uri":"tcp:{{{destinationAddress}}}:0"}}""");
        string port = ListeningPort(incoming);
        // While 'inmigrate', cont only sets QEMU's autostart: the VM starts at the switch.
        Qmp.Run(incoming, """{"execute":"cont"}""");
        return port;
    }

    /// <summary>Sets the source QEMU's capabilities and bandwidth cap, then starts the migration stream.</summary>
    private static void StartOutgoing(Domain domain, string[] caps, long bandwidthBytesPerSecond, string destinationAddress, string port)
    {
        // A VM that arrived by guide-copy may still have x-ignore-shared set; this stream must carry RAM.
        Qmp.Run(domain, Qmp.SetCapabilities(false, "x-ignore-shared"));
        Qmp.Run(domain, Qmp.SetCapabilities(true, caps));
        if (bandwidthBytesPerSecond > 0)
        {
            Qmp.Run(domain, $$$"""{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":{{{bandwidthBytesPerSecond}}},"max-postcopy-bandwidth":{{{bandwidthBytesPerSecond}}}}}""");
        }

        Qmp.Run(domain, $$$"""{"execute":"migrate","arguments":{"uri":"tcp:{{{destinationAddress}}}:{{{port}}}"}}""");
    }

    /// <summary>migrate-start-postcopy as soon as QEMU accepts it.</summary>
    private static void SwitchToPostCopy(Domain domain)
    {
        // QEMU refuses the switch until the migration thread is running ("Postcopy must be
        // started after migration has been started"): retry for a moment.
        var deadline = Stopwatch.StartNew();
        while (!Qmp.TryRun(domain, """{"execute":"migrate-start-postcopy"}"""))
        {
            string status = Status(Qmp.QueryMigrate(domain));
            if (status is "failed" or "cancelled" or "completed" || deadline.Elapsed > TimeSpan.FromSeconds(30))
            {
                throw new InvalidOperationException($"QEMU did not switch to post-copy (migration {status})");
            }

            Thread.Sleep(2);
        }
    }

    /// <summary>Before the switch: cancels the stream, destroys the destination's copy and undoes the source's capabilities.</summary>
    private static void RollBack(Domain domain, Domain incoming)
    {
        Qmp.TryRun(domain, """{"execute":"migrate_cancel"}""");
        TryDestroy(incoming);
        ResetCapabilities(domain);
    }

    /// <summary>Polls the source's query-migrate until it completes; returns its last reply.</summary>
    private static JsonNode WaitForLastPage(Domain domain, string domainName, Stopwatch clock, TimeSpan timeout, CancellationToken cancellation)
    {
        JsonNode sourceInfo;
        while (true)
        {
            sourceInfo = Qmp.QueryMigrate(domain);
            string status = Status(sourceInfo);
            if (status == "completed")
            {
                break;
            }

            if (status is "failed" or "cancelled" or "postcopy-paused")
            {
                throw new FailedAfterSwitchException(
                    $"QEMU post-copy of '{domainName}' went '{status}' after the switch: {sourceInfo["error-desc"]?.GetValue<string>() ?? "no reason given"}; " +
                    "the VM runs on the destination and the source holds the pages it did not get (QMP migrate-recover can resume it)");
            }

            if (clock.Elapsed > timeout + TimeSpan.FromMinutes(10))
            {
                throw new FailedAfterSwitchException($"QEMU post-copy of '{domainName}' has not completed in {clock.Elapsed.TotalSeconds:0} s after the switch; the VM runs on the destination");
            }

            cancellation.ThrowIfCancellationRequested();
            Thread.Sleep(50);
        }

        return sourceInfo;
    }

    /// <summary>The definition moves with the VM; the source copy goes.</summary>
    private static void HandOverDefinition(Domain domain, Connection destination, string? inactiveXml, bool persistent, bool keepSourceDefinition)
    {
        if (inactiveXml is not null)
        {
            using var defined = destination.DefineDomain(inactiveXml);
        }

        TryDestroy(domain);
        if (persistent && !keepSourceDefinition)
        {
            try { domain.Undefine(); } catch (LibvirtException) { }
        }
    }

    /// <summary>The port QEMU listens on after migrate-incoming tcp:ADDR:0 (query-migrate's socket-address).</summary>
    private static string ListeningPort(Domain incoming)
    {
        var addresses = Qmp.QueryMigrate(incoming)["socket-address"]?.AsArray();
        string? port = addresses?.Select(a => a?["port"]?.ToString()).FirstOrDefault(p => p is not null);
        return port ?? throw new InvalidOperationException("the destination QEMU did not report the port it listens on (query-migrate socket-address)");
    }

    private static void ResetCapabilities(Domain domain) =>
        Qmp.TryRun(domain, Qmp.SetCapabilities(false, "postcopy-preempt", "postcopy-blocktime", "postcopy-ram"));

    private static void TryDestroy(Domain domain)
    {
        try
        {
            if (domain.IsActive) domain.Destroy();
        }
        catch (LibvirtException)
        {
            // Already gone.
        }
    }

    private static string Status(JsonNode info) => info["status"]?.GetValue<string>() ?? "none";
}
