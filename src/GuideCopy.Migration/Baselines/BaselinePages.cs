using GuideCopy.Migration.Report;
using LibvirtSharp.Native;

namespace GuideCopy.Migration.Baselines;

/// <summary>
/// QEMU's own counters as our page categories, so that `compare` shows every mode on the same
/// terms. QEMU counts pages sent, not pages present: a page sent twice (pre-copy's dirty
/// re-sends) counts twice, so what exceeds the RAM's page count is the duplicate crossings.
/// Zero pages are QEMU's "duplicate" (libvirt: memory_constant): pages of one repeated byte,
/// sent as a flag. Post-copy requests are the destination's demand faults (each a page run).
/// </summary>
public static class BaselinePages
{
    public static PageCounts? From(BaselineResult result)
    {
        var s = result.Stats;
        // QMP-driven runs keep query-migrate's names; libvirt's job statistics its own.
        long? pageSize = Number(s, TypedParamFields.VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE) ?? (s.ContainsKey("normal") ? 4096 : null);
        long? zero = Number(s, TypedParamFields.VIR_DOMAIN_JOB_MEMORY_CONSTANT) ?? Number(s, "duplicate");
        long? normal = Number(s, TypedParamFields.VIR_DOMAIN_JOB_MEMORY_NORMAL) ?? Number(s, "normal");
        long? totalBytes = (long?)result.MemoryTotalBytes ?? Number(s, "total");
        if (pageSize is not > 0 || zero is null || normal is null || totalBytes is null)
        {
            return null;
        }

        long total = totalBytes.Value / pageSize.Value;
        long demand = Math.Min(normal.Value, (long)(result.PostCopyRequests ?? 0));
        long sent = normal.Value + zero.Value;
        long duplicate = Math.Max(0, sent - total);
        // Every page crossed at least once: the re-sends come out of the "background" (pre-copy's passes).
        long background = normal.Value - demand - Math.Min(duplicate, normal.Value - demand);
        long zeroOnce = zero.Value - Math.Max(0, duplicate - (normal.Value - demand));
        return new PageCounts(total, demand, 0, 0, background, zeroOnce, duplicate, PageSize: (int)pageSize.Value);
    }

    private static long? Number(IReadOnlyDictionary<string, object> stats, string key) =>
        stats.TryGetValue(key, out var v) && v is IConvertible c ? Convert.ToInt64(c) : null;
}
