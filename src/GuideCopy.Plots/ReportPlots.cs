using GuideCopy.Migration.Report;
using ScottPlot;

namespace GuideCopy.Plots;

/// <summary>
/// The pictures an operator looks at instead of the report's numbers (ScottPlot, SVG or PNG by
/// the file's extension): the guest's work per second across the switchover, one line per
/// report; the pages installed over time stacked by route against what the cap allows; the
/// stall latencies per mode.
/// </summary>
public static class ReportPlots
{
    private const int Width = 900;
    private const int Height = 450;

    /// <summary>The guest's own work per second, as a share of its rate before the migration, one line per report; 0 s is the switchover.</summary>
    public static void GuestWork(IReadOnlyList<MigrationReport> reports, string file)
    {
        var plot = new Plot();
        // A mode that did not complete has no switchover to line up on; shares need every line's rate before.
        var drawn = reports.Select((r, i) => (Report: r, Index: i)).Where(x => x.Report.Timeline?.GuestWork.Count > 0).ToList();
        bool shares = drawn.All(x => x.Report.Guest?.BeforeRate is > 0);
        foreach (var (report, i) in drawn)
        {
            var samples = report.Timeline!.GuestWork;
            double baseline = shares ? report.Guest!.BeforeRate!.Value / 100 : 1;
            var line = plot.Add.ScatterLine(samples.Select(s => s.T).ToArray(), samples.Select(s => s.WorkPerSecond / baseline).ToArray());
            line.LegendText = Label(report, i);
            line.LineWidth = 2;
        }

        var switchover = plot.Add.VerticalLine(0);
        switchover.LinePattern = LinePattern.Dashed;
        switchover.LegendText = "switchover";
        plot.Title("Guest work across the migration");
        plot.XLabel("seconds from the switchover");
        plot.YLabel(shares ? "work/s, % of the rate before" : "work/s");
        plot.ShowLegend(Alignment.LowerRight);
        Save(plot, file);
    }

    /// <summary>One guide-mode report's pages on the destination over time, stacked by route, and what a link at the cap could have carried since the switchover.</summary>
    public static void PagesByRoute(MigrationReport report, string file)
    {
        var samples = report.Timeline?.Pages ?? [];
        var plot = new Plot();
        if (samples.Count > 0)
        {
            double[] t = samples.Select(s => s.T).ToArray();
            var routes = new (string Name, Func<PagesSample, long> Of)[]
            {
                ("zero (no transfer)", s => s.Zero), ("demand", s => s.Demand), ("locality", s => s.Locality),
                ("push (guide order)", s => s.Push), ("background", s => s.Background),
            };
            double[] below = new double[samples.Count];
            foreach (var (name, of) in routes)
            {
                double[] top = samples.Select((s, k) => below[k] + of(s)).ToArray();
                var band = plot.Add.FillY(t, below, top);
                band.LegendText = name;
                below = top;
            }

            if (report.Timeline!.CapBytesPerSecond > 0)
            {
                double perSecond = report.Timeline.CapBytesPerSecond / (double)report.Timeline.PageSize;
                double end = t[^1];
                var cap = plot.Add.ScatterLine(new[] { 0.0, end }, new[] { 0.0, perSecond * end });
                cap.LinePattern = LinePattern.Dashed;
                cap.LineWidth = 2;
                cap.LegendText = $"the cap ({report.Timeline.CapBytesPerSecond * 8 / 1e6:0} Mbit/s), pages sent";
            }
        }

        plot.Title($"Pages on the destination by route: {report.Mode} {report.Domain}");
        plot.XLabel("seconds from the switchover");
        plot.YLabel("pages");
        plot.ShowLegend(Alignment.UpperLeft);
        Save(plot, file);
    }

    /// <summary>Stall latency per report: median, 99th percentile and longest demand fault.</summary>
    public static void Stalls(IReadOnlyList<MigrationReport> reports, string file)
    {
        var plot = new Plot();
        var kinds = new (string Name, Func<FaultStats, double?> Of)[] { ("p50", f => f.StallP50Ms), ("p99", f => f.StallP99Ms), ("max", f => f.StallMaxMs) };
        var ticks = new List<Tick>();
        for (int i = 0; i < reports.Count; i++)
        {
            ticks.Add(new Tick(i * (kinds.Length + 1) + 1, Label(reports[i], i)));
        }

        for (int k = 0; k < kinds.Length; k++)
        {
            var bars = new List<Bar>();
            for (int i = 0; i < reports.Count; i++)
            {
                if (reports[i].DestinationFaults is { } f && kinds[k].Of(f) is { } ms)
                {
                    bars.Add(new Bar { Position = i * (kinds.Length + 1) + k, Value = ms });
                }
            }

            var color = plot.Add.Palette.GetColor(k);
            foreach (var bar in bars)
            {
                bar.FillColor = color;
            }

            var series = plot.Add.Bars(bars);
            series.LegendText = kinds[k].Name;
        }

        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.ToArray());
        plot.Axes.Margins(bottom: 0);
        plot.Title("Demand-fault stalls (QEMU's modes report no per-fault latency)");
        plot.YLabel("ms");
        plot.ShowLegend(Alignment.UpperRight);
        Save(plot, file);
    }

    /// <summary>One line of a neighbour's throughput: its label, seconds from the first migration's start and Mbit/s, and when the last migration ended.</summary>
    public sealed record NeighbourLine(string Label, double[] T, double[] Mbit, double MigrationsEndT);

    /// <summary>
    /// Another tenant's TCP stream on the link during evacuations, one line per run, 0 s the first
    /// migration's start; each run's end marked; the budget the migrations were given as a line.
    /// </summary>
    public static void NeighbourThroughput(IReadOnlyList<NeighbourLine> runs, double budgetMbit, string file)
    {
        var plot = new Plot();
        for (int i = 0; i < runs.Count; i++)
        {
            var line = plot.Add.ScatterLine(runs[i].T, runs[i].Mbit);
            line.LegendText = runs[i].Label;
            line.LineWidth = 2;
            var end = plot.Add.VerticalLine(runs[i].MigrationsEndT);
            end.LinePattern = LinePattern.Dotted;
            end.Color = line.Color;
        }

        var start = plot.Add.VerticalLine(0);
        start.LinePattern = LinePattern.Dashed;
        start.LegendText = "migrations start (dotted: each run's last one ends)";
        if (budgetMbit > 0)
        {
            var budget = plot.Add.HorizontalLine(budgetMbit);
            budget.LinePattern = LinePattern.Dashed;
            budget.LegendText = $"the migrations' budget ({budgetMbit:0} Mbit/s)";
        }

        plot.Axes.SetLimitsY(0, Math.Max(1, runs.SelectMany(r => r.Mbit).DefaultIfEmpty(0).Max() * 1.1));
        plot.Title("A neighbour's TCP stream on the link during an evacuation");
        plot.XLabel("seconds from the first migration's start");
        plot.YLabel("neighbour Mbit/s");
        plot.ShowLegend(Alignment.LowerRight);
        Save(plot, file);
    }

    private static string Label(MigrationReport r, int i) =>
        $"{i + 1}. {r.Mode}{(r.Guide is null && r.Mode == "guide" ? " (guide off)" : "")}";

    private static void Save(Plot plot, string file)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(file));
        if (dir is not null)
        {
            Directory.CreateDirectory(dir);
        }

        if (file.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
        {
            plot.SavePng(file, Width, Height);
        }
        else
        {
            plot.SaveSvg(file, Width, Height);
        }
    }
}
