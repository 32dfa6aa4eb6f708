using System.Globalization;
using System.Text;

namespace GuideCopy.Migration.Report;

/// <summary>The report as a terminal table; several reports side by side for a comparison.</summary>
public static class ReportTable
{
    /// <summary>The pause's three pieces by the clocks (guide mode), ms: QEMU STOP to the stream's end, to the last byte's release, to QEMU RESUME.</summary>
    private static string PauseByTheClock(MigrationReport r) =>
        r.PhasesMs.TryGetValue("pauseStopToStreamEnd", out var a) && r.PhasesMs.TryGetValue("pauseStreamEndToRelease", out var b) &&
        r.PhasesMs.TryGetValue("pauseReleaseToResume", out var c)
            ? string.Create(CultureInfo.InvariantCulture, $"{a:0.0}+{b:0.0}+{c:0.0} ms")
            : "-";

    public static string Render(IReadOnlyList<MigrationReport> reports)
    {
        var rows = new List<(string Label, Func<MigrationReport, string> Value)>
        {
            ("mode", Label),
            ("outcome", r => r.Outcome.ToString()),
            ("total time", r => $"{r.TotalSeconds:0.00} s"),
            ("downtime", r => r.DowntimeMs is { } d ? $"{d:0} ms" : "-"),
            ("downtime (QEMU clocks)", r => r.DowntimeByQemuClocksMs is { } q ? $"{q:0} ms" : "-"),
            ("  stop>end>release>resume", PauseByTheClock),
            ("bytes on the wire", r => r.BytesOnWire is { } b ? Bytes(b) : "-"),
            ("  page data packed", r => r.Compression is { } c ? $"{c.Ratio ?? 1:0.00}x ({c.Policy}, {Bytes(c.PageBytes)} in {Bytes(c.WireBytes)})" : "-"),
            ("pages total", r => r.Pages?.Total.ToString(CultureInfo.InvariantCulture) ?? "-"),
            ("  by demand", r => r.Pages?.Demand.ToString(CultureInfo.InvariantCulture) ?? "-"),
            ("  by guide/push", r => r.Pages?.Guide.ToString(CultureInfo.InvariantCulture) ?? "-"),
            ("  by locality", r => r.Pages?.Locality.ToString(CultureInfo.InvariantCulture) ?? "-"),
            ("  by background", r => r.Pages?.Background.ToString(CultureInfo.InvariantCulture) ?? "-"),
            ("  zero (never sent)", r => r.Pages?.Zero.ToString(CultureInfo.InvariantCulture) ?? "-"),
            ("destination faults", r => r.DestinationFaults?.Faults.ToString(CultureInfo.InvariantCulture) ?? "-"),
            ("  stall p50 / p99", r => r.DestinationFaults is { StallP50Ms: { } p50, StallP99Ms: { } p99 } ? $"{p50:0.###} / {p99:0.###} ms" : "-"),
            ("  stall total", r => r.DestinationFaults?.StallTotalMs is { } t ? $"{t:0.#} ms" : "-"),
            ("guest work/s before", r => Rate(r.Guest?.BeforeRate)),
            ("guest work/s 20 s after", r => Rate(r.Guest?.DuringRate) + Rel(r.Guest?.DuringRelative)),
            ("guest work/s at the end", r => Rate(r.Guest?.AfterRate) + Rel(r.Guest?.AfterRelative)),
            ("guest work lost", r => r.Guest?.LostWorkSeconds is { } l ? $"{l:0.0} s in {r.Guest.LostWorkWindowSeconds:0} s" : "-"),
            ("  longest pause", r => r.Guest?.LongestPauseSeconds is { } p ? $"{p:0.0} s" : "-"),
            ("guest self-check", r => r.Guest is null ? "-" : r.Guest.ChecksOk ? "OK" : "MISMATCH"),
            ("guide", r => r.Guide is null ? "off" : r.Guide.Ran ? $"{r.Guide.RuntimeSeconds:0.0} s, cpu {r.Guide.CpuSeconds:0.0} s" : "did not run"),
            ("  pages logged / pushed", r => r.Guide is { } g ? $"{g.PagesLogged} / {g.PagesPushed}" : "-"),
            ("  hit rate", r => r.Guide?.HitRate is { } h ? $"{h * 100:0.0}%" : "-"),
            ("  late pushes / misses", r => r.Guide is { } g ? $"{g.LatePushes} / {g.Misses}" : "-"),
            ("  late: in flight / guide ahead by", r => r.Guide is { } g ? $"{g.LatePushesInFlight} / " + (g.LateGuideLeadP50Ms is { } a ? $"{a:0.#} ms" : "-") : "-"),
            ("  skipped to stay ahead", r => r.Guide is { } g ? $"{g.PagesSkippedForLead}" : "-"),
        };
        int labelWidth = rows.Max(r => r.Label.Length) + 2;
        var cells = rows.Select(r => reports.Select(rep => r.Value(rep)).ToList()).ToList();
        var widths = Enumerable.Range(0, reports.Count).Select(i => Math.Max(12, cells.Max(c => c[i].Length)) + 2).ToList();
        var sb = new StringBuilder();
        sb.AppendLine($"{reports[0].Domain}: {reports[0].Source} -> {reports[0].Destination}");
        for (int r = 0; r < rows.Count; r++)
        {
            sb.Append(rows[r].Label.PadRight(labelWidth));
            for (int i = 0; i < reports.Count; i++)
            {
                sb.Append(cells[r][i].PadLeft(widths[i]));
            }

            sb.AppendLine();
        }

        foreach (var rep in reports.Where(r => r.Error is not null))
        {
            sb.AppendLine($"{rep.Mode}: {rep.Error}");
        }

        foreach (var rep in reports.Where(r => r.Guide is not null))
        {
            sb.AppendLine($"{Label(rep)} guide stopped: {rep.Guide!.StopReason}");
        }

        return sb.ToString();
    }

    /// <summary>A column's name: the mode, and for ours whether the guide ran and, if forced, the page packing (-lz4, -raw).</summary>
    public static string Label(MigrationReport r) => r.Mode != "guide" ? r.Mode
        : (r.Guide is null ? "guide-off" : "guide-on") + r.Compression?.Policy switch { "lz4" => "-lz4", "off" => "-raw", _ => "" };

    private static string Bytes(long b) => b >= 1 << 20 ? $"{b / (1024.0 * 1024):0.0} MiB" : $"{b / 1024.0:0.0} KiB";

    private static string Rate(double? r) => r is { } x ? x.ToString("N0", CultureInfo.InvariantCulture) : "-";

    private static string Rel(double? r) => r is { } x ? $" ({x * 100:0}%)" : "";
}
