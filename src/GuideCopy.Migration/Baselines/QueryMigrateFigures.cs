using System.Text.Json.Nodes;

namespace GuideCopy.Migration.Baselines;

/// <summary>
/// A <see cref="QemuPostCopyMigration"/> run's cost, read from QEMU's own query-migrate replies:
/// the source's (times, RAM counters) and the destination's (postcopy-blocktime).
/// </summary>
internal static class QueryMigrateFigures
{
    public static BaselineResult Result(BaselineMode mode, string domainName, TimeSpan totalTime, JsonNode sourceInfo, JsonNode destinationInfo,
        TimeSpan? observedPause, TimeSpan? switchedAt, bool preempt)
    {
        var ram = sourceInfo["ram"];
        var stats = new Dictionary<string, object>
        {
            ["capabilities"] = preempt ? "postcopy-ram,postcopy-preempt" : "postcopy-ram",
        };
        Copy(sourceInfo, stats, "total-time", "downtime", "setup-time");
        Copy(ram, stats, "transferred", "total", "duplicate", "normal", "postcopy-requests", "postcopy-bytes", "dirty-sync-count");
        Copy(destinationInfo, stats, "postcopy-blocktime", "postcopy-vcpu-blocktime");
        return new BaselineResult(
            mode,
            domainName,
            totalTime,
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
