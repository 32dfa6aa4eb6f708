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
                Qmp.Run(incoming, Qmp.SetCapabilities(true, [.. caps, "postcopy-blocktime"]));
                Qmp.Run(incoming, $$$"""{"execute":"migrate-incoming","arguments":{"uri":"tcp:{{{destinationAddress}}}:0"}}""");
                string port = ListeningPort(incoming);
                // While 'inmigrate', cont only sets QEMU's autostart: the VM starts at the switch.
                Qmp.Run(incoming, """{"execute":"cont"}""");

                // A VM that arrived by guide-copy may still have x-ignore-shared set; this stream must carry RAM.
                Qmp.Run(domain, Qmp.SetCapabilities(false, "x-ignore-shared"));
                Qmp.Run(domain, Qmp.SetCapabilities(true, caps));
                if (bandwidthBytesPerSecond > 0)
                {
                    Qmp.Run(domain, $$$"""{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":{{{bandwidthBytesPerSecond}}},"max-postcopy-bandwidth":{{{bandwidthBytesPerSecond}}}}}""");
                }

                Qmp.Run(domain, $$$"""{"execute":"migrate","arguments":{"uri":"tcp:{{{destinationAddress}}}:{{{port}}}"}}""");
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

                switchedAt = clock.Elapsed;
            }
            catch (Exception e) when (e is InvalidOperationException or LibvirtException)
            {
                // Before the switch the source still runs the whole guest: cancel and drop the copy.
                Qmp.TryRun(domain, """{"execute":"migrate_cancel"}""");
                TryDestroy(incoming);
                ResetCapabilities(domain);
                throw;
            }

            // After the switch: wait for the last page; the source cannot take the VM back.
            JsonNode sourceInfo;
            var timeout = options.Timeout ?? BaselineOptions.DefaultTimeout;
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

            var destinationInfo = Qmp.QueryMigrate(incoming);
            // Leave no post-copy setting behind in the VM's QEMU: libvirt sets only the
            // capabilities it knows, and a later migration with postcopy-preempt still on but
            // postcopy-ram off is refused by QEMU.
            ResetCapabilities(incoming);

            // The definition moves with the VM; the source copy goes.
            if (inactiveXml is not null)
            {
                using var defined = destination.DefineDomain(inactiveXml);
            }

            TryDestroy(domain);
            if (persistent && !options.KeepSourceDefinition)
            {
                try { domain.Undefine(); } catch (LibvirtException) { }
            }

            // Total time as for every mode: to the last page in and the source gone.
            clock.Stop();

            TimeSpan? observedPause = pause.Observed();

            var ram = sourceInfo["ram"];
            var stats = new Dictionary<string, object>
            {
                ["capabilities"] = preempt ? "postcopy-ram,postcopy-preempt" : "postcopy-ram",
            };
            Copy(sourceInfo, stats, "total-time", "downtime", "setup-time");
            Copy(ram, stats, "transferred", "total", "duplicate", "normal", "postcopy-requests", "postcopy-bytes", "dirty-sync-count");
            Copy(destinationInfo, stats, "postcopy-blocktime", "postcopy-vcpu-blocktime");
            return new BaselineResult(
                options.Mode,
                domainName,
                clock.Elapsed,
                Ms(sourceInfo["total-time"]),
                Ms(sourceInfo["downtime"]),
                observedPause,
                ULong(ram?["transferred"]),
                ULong(ram?["transferred"]),
                ULong(ram?["total"]),
                ULong(ram?["dirty-sync-count"]),
                ULong(ram?["postcopy-requests"]),
                switchedAt,
                EnteredPostCopy: true,
                stats)
            {
                BlockTime = Ms(destinationInfo["postcopy-blocktime"]),
            };
        }
        finally
        {
            incoming.Dispose();
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

    private static void Copy(JsonNode? from, Dictionary<string, object> to, params string[] keys)
    {
        foreach (var k in keys)
        {
            if (from?[k] is { } v)
            {
                to[k] = v is JsonValue value && value.TryGetValue(out long n) ? n : v.ToJsonString();
            }
        }
    }

    private static ulong? ULong(JsonNode? n) => n is JsonValue v && v.TryGetValue(out long x) && x >= 0 ? (ulong)x : null;

    private static TimeSpan? Ms(JsonNode? n) => ULong(n) is { } ms ? TimeSpan.FromMilliseconds(ms) : null;
}

/// <summary>
/// A QMP-driven post-copy failed after the switch: the VM runs on the destination and the source
/// cannot take it back (the report's FailedAfterCommit, exit 12), unlike a failure before it.
/// </summary>
public sealed class FailedAfterSwitchException(string message) : InvalidOperationException(message);
