using GuideCopy.Transport;
using System.Diagnostics.Metrics;
using GuideCopy.Migration.Journal;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// What a monitoring system scrapes from an agent (System.Diagnostics.Metrics; the agent's
/// `guidecopy agent` exports the meter for Prometheus, names in docs/metrics.md). Counted once
/// per migration and host, when its journal takes a final stage or its destination completes,
/// never per page: nothing here is on a fault's path.
/// </summary>
public static class AgentMetrics
{
    // prometheus-net names each series meter_instrument: guidecopy_migrations, guidecopy_pages, ...
    public const string MeterName = "GuideCopy";

    private static readonly Meter Meter = new(MeterName);

    private static readonly Counter<long> Migrations = Meter.CreateCounter<long>(
        "migrations", description: "Migrations that ended on this host, by role (source, destination) and outcome (completed, rolled_back, failed).");

    private static readonly Counter<long> Pages = Meter.CreateCounter<long>(
        "pages", description: "Pages installed on this destination by route: demand, push, locality, background, zero, duplicate.");

    private static readonly Counter<long> Bytes = Meter.CreateCounter<long>(
        "received_bytes", unit: "bytes", description: "Bytes this destination received on its page lanes.");

    private static readonly Counter<long> Faults = Meter.CreateCounter<long>(
        "demand_faults", description: "Destination vCPU faults on pages not yet there (each waited on the network).");

    private static readonly Counter<long> Reconnects = Meter.CreateCounter<long>(
        "lane_reconnects", description: "Page-lane reconnects on this destination (link cuts, a restarted source agent).");

    private static readonly Histogram<double> Downtime = Meter.CreateHistogram<double>(
        "downtime_ms", unit: "ms",
        description: "Destination's view of the pause: first device-state byte in to its QEMU resumed (the source's vCPUs stopped just before that byte).");

    private static readonly Histogram<double> Stall = Meter.CreateHistogram<double>(
        "stall_ms", unit: "ms", description: "Per migration: the time this destination's vCPUs waited on demand faults, summed.");

    private static int _active;

    static AgentMetrics()
    {
        Meter.CreateObservableGauge("migrations_active", () => Volatile.Read(ref _active),
            description: "Migrations this agent is taking part in now (either role).");
    }

    /// <summary>Creates the meter now, so an exporter listening for meters sees its instruments before the first migration.</summary>
    public static void Publish()
    {
    }

    /// <summary>A migration side started here (its first journal record).</summary>
    public static void Started() => Interlocked.Increment(ref _active);

    /// <summary>Counts a side that took a final stage; called once per side.</summary>
    public static void Ended(MigrationRole role, MigrationStage stage)
    {
        Interlocked.Decrement(ref _active);
        string outcome = stage switch
        {
            MigrationStage.Completed => "completed",
            MigrationStage.RolledBack => "rolled_back",
            _ => "failed",
        };
        Migrations.Add(1, new("role", role.ToString().ToLowerInvariant()), new("outcome", outcome));
    }

    public static void PauseEnded(double milliseconds) => Downtime.Record(milliseconds);

    /// <summary>A destination's figures once every page is in (or its pager ended).</summary>
    public static void DestinationFinished(PagerCounters s)
    {
        Pages.Add(s.DemandPages, new KeyValuePair<string, object?>("route", "demand"));
        Pages.Add(s.PushPages, new KeyValuePair<string, object?>("route", "push"));
        Pages.Add(s.LocalityPages, new KeyValuePair<string, object?>("route", "locality"));
        Pages.Add(s.BackgroundPages, new KeyValuePair<string, object?>("route", "background"));
        Pages.Add(s.WarmPages, new KeyValuePair<string, object?>("route", "warm"));
        Pages.Add(s.ZeroOrRemovedPages, new KeyValuePair<string, object?>("route", "zero"));
        Pages.Add(s.DuplicatePages, new KeyValuePair<string, object?>("route", "duplicate"));
        Bytes.Add(s.BytesReceived);
        Faults.Add(s.Faults);
        Reconnects.Add(s.Reconnects);
        Stall.Record(s.StallTotalMs);
    }
}
