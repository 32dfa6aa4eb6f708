using System.Text.Json;
using GuideCopy.Migration.Baselines;
using GuideCopy.Migration.Definitions;
using GuideCopy.Migration.Report;
using LibvirtSharp;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// The baselines — libvirt's own modes (pre-copy, post-copy) through <see cref="BaselineMigration"/>,
/// QEMU post-copy with and without preempt through <see cref="QemuPostCopyMigration"/> — reported
/// on the same terms as ours: the migration's own counters plus the guest's own progress.
/// </summary>
public static class LibvirtModeMigration
{
    public static async Task<MigrationReport> RunAsync(MigrationPlan plan, BaselineMode mode, CancellationToken ct)
    {
        var startedAt = DateTimeOffset.UtcNow;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        MigrationReport Failed(MigrationOutcome outcome, string error) => new()
        {
            Mode = plan.Mode, Domain = plan.Domain, Source = plan.From.Name, Destination = plan.To.Name,
            Outcome = outcome, Error = error, StartedAt = startedAt, TotalSeconds = Math.Round(clock.Elapsed.TotalSeconds, 3),
        };

        Connection src, dst;
        try
        {
            src = Connection.Open(plan.From.LibvirtUri);
            dst = Connection.Open(plan.To.LibvirtUri);
        }
        catch (LibvirtException e)
        {
            return Failed(MigrationOutcome.Refused, $"libvirt: {e.LibvirtMessage}");
        }

        using (src)
        using (dst)
        {
            if (ReadDomain(src, plan.Domain) is not { } domain)
            {
                return Failed(MigrationOutcome.Refused, $"domain '{plan.Domain}' not found on {plan.From.Name}");
            }

            var (definition, destinationXml) = domain;

            IWatchedGuest? watched = plan.GuestWatch is { } watch ? await watch.StartAsync(definition, ct) : null;
            try
            {
                var startWall = DateTime.UtcNow;
                BaselineResult result;
                try
                {
                    result = await RunBaselineAsync(src, dst, plan, mode, destinationXml, ct);
                }
                catch (Exception e) when (e is LibvirtException or InvalidOperationException or TimeoutException)
                {
                    string msg = e is LibvirtException le ? $"libvirt: {le.LibvirtMessage}" : e.Message;
                    // Before post-copy's switch the migration is cancelled and the source keeps running;
                    // after it (only QMP-driven runs report that) the destination is the VM.
                    var outcome = e is FailedAfterSwitchException ? MigrationOutcome.FailedAfterCommit : MigrationOutcome.RolledBack;
                    return Failed(outcome, msg);
                }

                var completedAt = DateTime.UtcNow;
                // The pause: pre-copy's is at the very end, post-copy's at the switch.
                DateTime switchoverAt = result.SwitchedToPostCopyAfter is { } sw
                    ? startWall + sw
                    : completedAt - (result.Downtime ?? TimeSpan.Zero);
                GuestReadout? guest = watched is null ? null : await watched.FinishAsync(switchoverAt, completedAt, plan.ObserveAfter, ct);
                return Completed(plan, startedAt, result, guest);
            }
            finally
            {
                watched?.Dispose();
            }
        }
    }

    /// <summary>
    /// The domain's definition (what the guest watch reads) and the XML libvirt is handed for the
    /// destination, null when it needs none; null when the domain is not on the source.
    /// </summary>
    private static (DomainDefinition Definition, string? DestinationXml)? ReadDomain(Connection src, string name)
    {
        using var dom = src.TryLookupDomain(name);
        if (dom is null)
        {
            return null;
        }

        var definition = DomainDefinition.Parse(dom.GetXml());
        // A VM that arrived by guide-copy: hand libvirt its XML without our -incoming and shim.
        string live = dom.GetXml(LibvirtSharp.Native.virDomainXMLFlags.VIR_DOMAIN_XML_MIGRATABLE);
        string clean = DestinationXml.WithoutOurAdditions(live);
        return (definition, ReferenceEquals(clean, live) ? null : clean);
    }

    /// <summary>The baseline itself, on a thread of its own (libvirt's calls block).</summary>
    private static Task<BaselineResult> RunBaselineAsync(Connection src, Connection dst, MigrationPlan plan, BaselineMode mode, string? destinationXml, CancellationToken ct)
    {
        var options = new BaselineOptions(mode,
            BandwidthMiBps: plan.BandwidthBytesPerSecond > 0 ? (ulong)Math.Max(1, plan.BandwidthBytesPerSecond >> 20) : null,
            MigrationUri: plan.To.MigrationAddress is { } a ? $"tcp://{a}" : null,
            DestinationXml: destinationXml,
            Timeout: plan.Timeout,
            MaxDowntime: plan.MaxDowntime,
            KeepSourceDefinition: plan.KeepSourceDefinition);
        return Task.Run(() => mode.IsQmpDriven()
            ? QemuPostCopyMigration.Run(src, dst, plan.Domain, plan.To.MigrationAddress
                ?? throw new InvalidOperationException($"{mode.ToCliName()} needs the destination's address on the migration link (a qemu+tcp://HOST URI or a lab host)"),
                options, plan.BandwidthBytesPerSecond, ct)
            : BaselineMigration.Run(src, dst, plan.Domain, plan.To.PeerLibvirtUri, options, ct), ct);
    }

    /// <param name="guest">Null when the guest was not watched: no guest figures, no timeline.</param>
    private static MigrationReport Completed(MigrationPlan plan, DateTimeOffset startedAt, BaselineResult result, GuestReadout? guest)
    {
        var details = result.Stats.ToDictionary(kv => kv.Key, kv => JsonSerializer.SerializeToElement(kv.Value));
        details["enteredPostCopy"] = JsonSerializer.SerializeToElement(result.EnteredPostCopy);
        if (result.SwitchedToPostCopyAfter is { } s)
        {
            details["switchedToPostCopyAfterMs"] = JsonSerializer.SerializeToElement(Math.Round(s.TotalMilliseconds, 1));
        }

        return new MigrationReport
        {
            Mode = plan.Mode,
            Domain = plan.Domain,
            Source = plan.From.Name,
            Destination = plan.To.Name,
            Outcome = MigrationOutcome.Completed,
            StartedAt = startedAt,
            TotalSeconds = Math.Round(result.TotalTime.TotalSeconds, 3),
            // QEMU's own post-copy downtime figure is unreliable (docs/FACTS.md); where the events
            // were seen, the QMP-driven runs report the pause the guest saw.
            // The pause the guest saw (source SUSPENDED to destination RESUMED), as for our
            // mode; libvirt's own figure (unreliable for post-copy, docs/FACTS.md) only if an event was missed.
            DowntimeMs = (result.ObservedPause ?? result.Downtime)?.TotalMilliseconds,
            DowntimeByQemuClocksMs = result.PauseByQemuClocks is { } q ? Math.Round(q.TotalMilliseconds, 2) : null,
            BytesOnWire = (long?)result.DataBytes,
            Pages = BaselinePages.From(result),
            // Page requests are the destination's demand faults; QMP-driven runs also have the
            // vCPUs' blocked time (postcopy-blocktime), the counterpart of our stall total.
            DestinationFaults = result.PostCopyRequests is { } reqs
                ? new FaultStats((long)reqs, (long)reqs, null, null, null, result.BlockTime?.TotalMilliseconds)
                : null,
            Guest = guest?.Throughput,
            // No per-route page samples: libvirt's job stats have no routes.
            Timeline = guest is null ? null : new MigrationTimeline(guest.Work, [], plan.BandwidthBytesPerSecond),
            Details = details,
        };
    }
}
