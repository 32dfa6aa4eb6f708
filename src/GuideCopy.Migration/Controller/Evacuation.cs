using System.Diagnostics;
using GuideCopy.Migration.Definitions;
using GuideCopy.Migration.Report;
using LibvirtSharp;
using LibvirtSharp.Native;

namespace GuideCopy.Migration.Controller;

/// <summary>A domain the evacuation left where it was, and why (one sentence naming the fix).</summary>
public sealed record EvacuationSkip(string Domain, string Reason);

/// <summary>What an evacuation did: one report per VM it moved (or tried to), the ones it skipped, its wall time.</summary>
/// <param name="SumOfMigrationSeconds">Each migration's own total time added up: what moving them one by one would take, at best.</param>
public sealed record EvacuationResult(
    IReadOnlyList<MigrationReport> Reports, IReadOnlyList<EvacuationSkip> Skipped, double WallSeconds, double SumOfMigrationSeconds,
    int Parallel, long BandwidthBytesPerSecond, string Mode)
{
    /// <summary>Every domain it tried was moved (an empty host is a success too).</summary>
    public bool AllCompleted => Reports.All(r => r.Outcome == MigrationOutcome.Completed);
}

/// <summary>
/// Moves every running domain of a host that meets the requirements, <c>parallel</c> at a time.
/// Guide mode's migrations name one bandwidth group, so their push lanes share the budget on the
/// source agent (<c>LanePacer.ForGroup</c>: a migration that has nothing left to push leaves its
/// share to the others) and their demand lanes are never held by it. QEMU's modes have no shared
/// pacer: each gets an equal share of the budget (libvirt's migrate speed), fixed at its start.
/// One migration's failure does not stop the others: each VM stays where its own report says.
/// </summary>
public static class Evacuation
{
    /// <summary>The running domains of <paramref name="libvirtUri"/>, split into the ones to move and the ones skipped (with why).</summary>
    public static (IReadOnlyList<string> ToMove, IReadOnlyList<EvacuationSkip> Skipped) Select(string libvirtUri, string mode)
    {
        var move = new List<string>();
        var skipped = new List<EvacuationSkip>();
        using var conn = Connection.Open(libvirtUri);
        foreach (var dom in conn.ListAllDomains(virConnectListAllDomainsFlags.VIR_CONNECT_LIST_DOMAINS_ACTIVE).OrderBy(d => d.Name, StringComparer.Ordinal))
        {
            using (dom)
            {
                string name = dom.Name;
                if (dom.State.State != virDomainState.VIR_DOMAIN_RUNNING)
                {
                    skipped.Add(new EvacuationSkip(name, $"not running ({dom.State.State}): resume it and evacuate again, or move it with 'guidecopy migrate'"));
                    continue;
                }

                var problems = mode == "guide" ? DomainRequirements.Check(DomainDefinition.Parse(dom.GetXml())) : [];
                if (problems.Count > 0)
                {
                    skipped.Add(new EvacuationSkip(name, string.Join("; ", problems)));
                    continue;
                }

                move.Add(name);
            }
        }

        return (move, skipped);
    }

    /// <summary>
    /// Runs <paramref name="migrate"/> for each domain, at most <paramref name="parallel"/> at once,
    /// in the order given. <paramref name="planFor"/> makes each domain's plan from its share:
    /// (domain, bandwidth bytes/s, bandwidth group).
    /// </summary>
    public static async Task<EvacuationResult> RunAsync(
        IReadOnlyList<string> domains, IReadOnlyList<EvacuationSkip> skipped, string mode, int parallel, long bandwidthBytesPerSecond,
        Func<string, long, string?, MigrationPlan> planFor, Func<MigrationPlan, CancellationToken, Task<MigrationReport>> migrate,
        Action<MigrationReport>? onReport, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(parallel, 1);
        var clock = Stopwatch.StartNew();
        // Ours: one group, the whole budget, shared as the lanes go. QEMU's: a fixed equal share each.
        string? group = mode == "guide" && bandwidthBytesPerSecond > 0 ? $"evacuation-{Guid.NewGuid():N}" : null;
        long share = group is not null || bandwidthBytesPerSecond <= 0 ? bandwidthBytesPerSecond
            : Math.Max(1, bandwidthBytesPerSecond / Math.Min(parallel, Math.Max(1, domains.Count)));
        var reports = new MigrationReport?[domains.Count];
        using var slots = new SemaphoreSlim(parallel);
        var runs = domains.Select(async (domain, i) =>
        {
            await slots.WaitAsync(ct);
            try
            {
                var report = await migrate(planFor(domain, share, group), ct);
                reports[i] = report;
                onReport?.Invoke(report);
            }
            finally
            {
                slots.Release();
            }
        }).ToList();
        await Task.WhenAll(runs);
        var done = reports.OfType<MigrationReport>().ToList();
        return new EvacuationResult(done, skipped, Math.Round(clock.Elapsed.TotalSeconds, 2), Math.Round(done.Sum(r => r.TotalSeconds), 2),
            parallel, bandwidthBytesPerSecond, mode);
    }
}
