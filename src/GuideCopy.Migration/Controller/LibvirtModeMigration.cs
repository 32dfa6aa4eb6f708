using System.Text.Json;
using GuideCopy.Guest;
using GuideCopy.Migration.Baselines;
using GuideCopy.Migration.Definitions;
using GuideCopy.Migration.Report;
using LibvirtSharp;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// The baselines — libvirt's own modes (pre-copy, post-copy) through <see cref="BaselineMigration"/>,
/// QEMU post-copy with and without preempt through <see cref="QemuPostCopyMigration"/> — reported
/// on the same terms as ours: the migration's own counters plus the guest's heartbeats.
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
            string? console;
            string? destinationXml;
            using (var dom = src.TryLookupDomain(plan.Domain))
            {
                if (dom is null)
                {
                    return Failed(MigrationOutcome.Refused, $"domain '{plan.Domain}' not found on {plan.From.Name}");
                }

                console = plan.ConsoleFile ?? DomainDefinition.Parse(dom.GetXml()).ConsoleFile;
                // A VM that arrived by guide-copy: hand libvirt its XML without our -incoming and shim.
                string live = dom.GetXml(LibvirtSharp.Native.virDomainXMLFlags.VIR_DOMAIN_XML_MIGRATABLE);
                string clean = DestinationXml.WithoutOurAdditions(live);
                destinationXml = ReferenceEquals(clean, live) ? null : clean;
            }

            HeartbeatFollower? follower = console is not null && File.Exists(console) ? new GuestConsole(console).Follow() : null;
            try
            {
                IReadOnlyList<Heartbeat> history = [];
                if (follower is not null)
                {
                    var deadline = DateTime.UtcNow.AddSeconds(1.5);
                    while (follower.Snapshot().Count == 0 && DateTime.UtcNow < deadline)
                    {
                        await Task.Delay(50, ct);
                    }

                    // The "before" window comes from the console's history (guest time), as for our
                    // mode: a post-copy switched at once leaves the live follower no beats before it.
                    history = new GuestConsole(console!).ReadAll();
                }

                var startWall = DateTime.UtcNow;
                var options = new BaselineOptions(mode,
                    BandwidthMiBps: plan.BandwidthBytesPerSecond > 0 ? (ulong)Math.Max(1, plan.BandwidthBytesPerSecond >> 20) : null,
                    MigrationUri: plan.To.MigrationAddress is { } a ? $"tcp://{a}" : null,
                    DestinationXml: destinationXml,
                    Timeout: plan.Timeout,
                    MaxDowntime: plan.MaxDowntime,
                    KeepSourceDefinition: plan.KeepSourceDefinition);
                BaselineResult result;
                try
                {
                    result = await Task.Run(() => mode.IsQmpDriven()
                        ? QemuPostCopyMigration.Run(src, dst, plan.Domain, plan.To.MigrationAddress
                            ?? throw new InvalidOperationException($"{mode.ToCliName()} needs the destination's address on the migration link (a qemu+tcp://HOST URI or a lab host)"),
                            options, plan.BandwidthBytesPerSecond, ct)
                        : BaselineMigration.Run(src, dst, plan.Domain, plan.To.PeerLibvirtUri, options, ct), ct);
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
                if (follower is not null)
                {
                    await ThroughputWindows.ObserveAsync(switchoverAt, completedAt, plan.ObserveAfter, ct);
                }

                var live = follower?.Snapshot() ?? [];
                var guest = follower is null ? null : ThroughputWindows.Compute(history, live, switchoverAt, completedAt);
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
                    BytesOnWire = (long?)result.DataBytes,
                    Pages = BaselinePages.From(result),
                    // Page requests are the destination's demand faults; QMP-driven runs also have the
                    // vCPUs' blocked time (postcopy-blocktime), the counterpart of our stall total.
                    DestinationFaults = result.PostCopyRequests is { } reqs
                        ? new FaultStats((long)reqs, (long)reqs, null, null, null, result.BlockTime?.TotalMilliseconds)
                        : null,
                    Guest = guest,
                    // No per-route page samples: libvirt's job stats have no routes.
                    Timeline = follower is null ? null : new MigrationTimeline(ThroughputWindows.Series(history, live, switchoverAt), [], plan.BandwidthBytesPerSecond),
                    Details = details,
                };
            }
            finally
            {
                follower?.Dispose();
            }
        }
    }
}
