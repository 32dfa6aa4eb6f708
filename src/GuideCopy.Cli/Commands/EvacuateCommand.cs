using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using GuideCopy.Cli.Configuration;
using GuideCopy.Cli.Neighbour;
using GuideCopy.Cli.GuestWatch;
using GuideCopy.Cli.HostCost;
using GuideCopy.Lab;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Controller;
using GuideCopy.Migration.Guide;
using GuideCopy.Migration.Report;
using GuideCopy.Plots;

namespace GuideCopy.Cli.Commands;

/// <summary>`guidecopy evacuate --from X --to Y [--parallel N] [--bandwidth TOTAL]`: every running domain of a host, N at a time, one budget.</summary>
internal static class EvacuateCommand
{
    /// <summary>What `evacuate --json` prints: the evacuation, each VM's report, and the neighbour's throughput if measured.</summary>
    internal sealed record EvacuationJson(
        string From, string To, string Mode, int Parallel, long BandwidthBytesPerSecond, double WallSeconds, double SumOfMigrationSeconds,
        IReadOnlyList<MigrationReport> Reports, IReadOnlyList<EvacuationSkip> Skipped, NeighbourJson? Neighbour,
        IReadOnlyDictionary<string, AgentCostFigures>? AgentCost);

    /// <summary>The neighbour flow: mean bytes/s before, during and after the migrations, and every second of it.</summary>
    internal sealed record NeighbourJson(double? BeforeBytesPerSecond, double? DuringBytesPerSecond, double? AfterBytesPerSecond,
        double MigrationsStartT, double MigrationsEndT, IReadOnlyList<FlowSample> Samples, string? Failure);

    public static Command Create()
    {
        var from = new Option<string>("--from") { Description = "The host to empty: a libvirt URI (qemu+tcp://HOST/system) or lab:a / lab:NAME/a.", Required = true };
        var to = new Option<string>("--to") { Description = "Where the VMs go, same forms as --from.", Required = true };
        var parallel = new Option<int>("--parallel") { Description = "Migrations at once.", DefaultValueFactory = _ => 2 };
        parallel.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() is < 1 or > 32)
            {
                r.AddError("--parallel must be 1 to 32");
            }
        });
        var bandwidth = new Option<string?>("--bandwidth") { Description = "The host's budget for all the migrations together: a plain number is MiB/s (as virsh), or 100mbit, 1gbit, 12MiB/s. Guide mode shares it between the push lanes as they go and never holds demand pages with it; QEMU's modes get an equal fixed share each." };
        var mode = new Option<string>("--mode") { Description = "guide (ours) or one of QEMU's modes, as for migrate.", DefaultValueFactory = _ => "guide" };
        mode.AcceptOnlyFromAmong(MigrateCommand.Modes);
        var guide = new Option<string>("--guide") { Description = "With --mode guide: a guide clone per VM on the source (on) or none (off).", DefaultValueFactory = _ => "on" };
        guide.AcceptOnlyFromAmong("on", "off");
        var neighbour = new Option<bool>("--neighbour") { Description = "Lab hosts only: run another tenant's TCP stream from --from to --to over the same link during the evacuation and report its throughput before, during and after." };
        var settle = new Option<double>("--neighbour-seconds") { Description = "With --neighbour: seconds of the neighbour alone before the first migration and after the last.", DefaultValueFactory = _ => 10 };
        var json = new Option<bool>("--json") { Description = "Print the evacuation as JSON: each VM's report (docs/report-schema.json), the skipped ones, the neighbour's throughput." };
        var plot = new Option<string?>("--plot") { Description = "With --neighbour: write the neighbour's throughput over the evacuation to FILE (.svg or .png)." };
        var replot = new Option<string[]>("--plot-from") { Description = "Draw the neighbour lines of saved 'evacuate --json' outputs into --plot's FILE, one line per file, and move nothing.", AllowMultipleArgumentsPerToken = true };
        var timeout = new Option<double?>("--timeout") { Description = "Seconds per VM: give up on a migration that has not reached its commit point by then (as migrate --timeout); that VM stays on the source, the others go on." };
        var observe = new Option<double>("--observe") { Description = "Seconds to watch each guest's heartbeats after its migration, for its report.", DefaultValueFactory = _ => 5 };
        var secret = new Option<string?>("--secret-file") { Description = "Shared secret of the agents (default Controller:SecretFile; the lab's own for lab: hosts)." };
        var compress = MigrateCommand.CompressOption();
        var insecure = MigrateCommand.InsecureLanesOption();
        var config = AgentCommand.ConfigOption();
        var cmd = new Command("evacuate", "Move every running domain that meets the requirements off a host, N at a time, sharing one bandwidth budget; a report per VM and a summary.\n" +
                                          "Exit codes: 0 every VM moved (or none to move); otherwise the code 'guidecopy migrate' gives for the first VM that did not (each VM stays where its report says).")
        {
            from, to, parallel, bandwidth, mode, guide, neighbour, settle, json, timeout, observe, secret, compress, insecure, config, plot, replot,
        };
        cmd.SetAction(async (p, ct) =>
        {
            if (p.GetValue(replot) is { Length: > 0 } saved)
            {
                return Cli.Guard(() => Replot(saved, p.GetValue(plot)));
            }

            bool asJson = p.GetValue(json);
            MigrationTarget src, dst;
            byte[] secretBytes;
            GuideOptions guideOptions;
            ControllerOptions controller;
            (LabRig Lab, LabHost Host)? labFrom, labTo;
            try
            {
                var cfg = GuideCopyConfiguration.Build(p.GetValue(config), []);
                src = MigrateCommand.ResolveTarget(p.GetValue(from)!, null, out string? srcSecret);
                dst = MigrateCommand.ResolveTarget(p.GetValue(to)!, null, out string? dstSecret);
                controller = cfg.Section<ControllerOptions>("Controller");
                secretBytes = p.GetValue(mode) == "guide" ? SharedSecret.Read(p.GetValue(secret) ?? srcSecret ?? dstSecret ?? controller.SecretFile) : [];
                guideOptions = cfg.Section<GuideOptions>("Guide");
                guideOptions.Enabled = p.GetValue(guide) == "on";
                labFrom = MigrateCommand.LabTarget(p.GetValue(from)!);
                labTo = MigrateCommand.LabTarget(p.GetValue(to)!);
                if (p.GetValue(neighbour) && (labFrom is null || labTo is null))
                {
                    throw new ArgumentException("--neighbour needs lab hosts (--from lab:a --to lab:b): it runs its stream between their network namespaces");
                }
            }
            catch (Exception e) when (e is LabException or AgentException or FormatException or ArgumentException or ConfigurationException)
            {
                Console.Error.WriteLine($"guidecopy evacuate: {e.Message}");
                return ExitCodes.Usage;
            }

            string modeName = p.GetValue(mode)!;
            var (toMove, skipped) = Evacuation.Select(src.LibvirtUri, modeName);
            foreach (var s in skipped)
            {
                Console.Error.WriteLine($"guidecopy evacuate: skipping {s.Domain}: {s.Reason}");
            }

            if (!asJson)
            {
                Console.Error.WriteLine($"guidecopy evacuate: {toMove.Count} domain(s) from {src.Name} to {dst.Name}, {p.GetValue(parallel)} at a time: {string.Join(", ", toMove)}");
            }

            long budget = MigrateCommand.ParseBandwidth(p.GetValue(bandwidth));
            var compression = MigrateCommand.Compression(p.GetValue(compress), controller);
            bool clearText = p.GetValue(insecure) || controller.InsecureLanes;
            MigrationPlan PlanFor(string domain, long share, string? group) =>
                new(domain, src, dst, modeName, share, secretBytes, GuestWatch: new ConsoleGuestWatch(), ObserveAfter: TimeSpan.FromSeconds(p.GetValue(observe)),
                    Guide: guideOptions, ClearTextLanes: clearText, Compression: compression, BandwidthGroup: group,
                    Timeout: p.GetValue(timeout) is { } t ? TimeSpan.FromSeconds(t) : null);

            using var flow = p.GetValue(neighbour) ? NeighbourFlow.Start(labFrom!.Value.Host, labTo!.Value.Host) : null;
            double settleSeconds = p.GetValue(settle);
            if (flow is not null)
            {
                await Task.Delay(TimeSpan.FromSeconds(settleSeconds), ct);
            }

            double startT = flow?.Now ?? 0;
            // Lab hosts: what the agents cost for the whole evacuation (guide mode's work is theirs).
            using var cost = labFrom is { } lf && labTo is not null ? AgentCost.Start(lf.Lab) : null;
            var result = await Evacuation.RunAsync(toMove, skipped, modeName, p.GetValue(parallel), budget, PlanFor,
                (plan, token) => MigrateCommand.RunAsync(plan, showProgress: false, token),
                r =>
                {
                    if (!asJson)
                    {
                        Console.Error.WriteLine($"guidecopy evacuate: {r.Domain}: {r.Outcome}, {r.TotalSeconds:0.0} s, downtime {r.DowntimeMs:0} ms{(r.Error is null ? "" : ": " + r.Error)}");
                    }
                }, ct);
            double endT = flow?.Now ?? 0;
            var agentCost = cost?.Stop();
            if (flow is not null)
            {
                await Task.Delay(TimeSpan.FromSeconds(settleSeconds), ct);
            }

            var neighbourJson = flow is null ? null : new NeighbourJson(
                flow.Mean(0, startT), flow.Mean(startT, endT), flow.Mean(endT, flow.Now), Math.Round(startT, 2), Math.Round(endT, 2), flow.Samples, flow.Failure);
            Print(result, src.Name, dst.Name, neighbourJson, agentCost, asJson);
            if (p.GetValue(plot) is { } file && neighbourJson is not null)
            {
                ReportPlots.NeighbourThroughput([LineOf($"{modeName}, {result.Parallel} at a time", neighbourJson)], budget * 8 / 1e6, file);
                Console.Error.WriteLine($"guidecopy evacuate: wrote {file}");
            }
            return result.Reports.FirstOrDefault(r => r.Outcome != MigrationOutcome.Completed) is { } first ? ExitCodes.For(first.Outcome) : ExitCodes.Success;
        });
        return cmd;
    }

    private static ReportPlots.NeighbourLine LineOf(string label, NeighbourJson n) =>
        new(label, n.Samples.Select(s => s.T - n.MigrationsStartT).ToArray(), n.Samples.Select(s => s.BytesPerSecond * 8 / 1e6).ToArray(),
            n.MigrationsEndT - n.MigrationsStartT);

    /// <summary>Several saved evacuations' neighbour lines in one picture (the same budget expected: the first file's).</summary>
    private static int Replot(string[] files, string? output)
    {
        if (output is null)
        {
            Console.Error.WriteLine("guidecopy evacuate: --plot-from needs --plot FILE to write to");
            return ExitCodes.Usage;
        }

        var runs = files.Select(f => JsonSerializer.Deserialize<EvacuationJson>(File.ReadAllText(f), MigrationReport.Json)
            ?? throw new LabException($"{f}: not an 'evacuate --json' output")).ToList();
        var lines = runs.Where(r => r.Neighbour is not null)
            .Select(r => LineOf($"{r.Mode}{(r.Mode == "guide" && r.Reports.Any(x => x.Guide is null) ? " (guide off)" : "")}, {r.Parallel} at a time", r.Neighbour!)).ToList();
        if (lines.Count == 0)
        {
            throw new LabException("none of the files has a neighbour stream: run evacuate with --neighbour");
        }

        ReportPlots.NeighbourThroughput(lines, runs[0].BandwidthBytesPerSecond * 8 / 1e6, output);
        Console.Error.WriteLine($"guidecopy evacuate: wrote {output}");
        return ExitCodes.Success;
    }

    private static void Print(EvacuationResult result, string from, string to, NeighbourJson? neighbour,
        IReadOnlyDictionary<string, AgentCostFigures>? agentCost, bool asJson)
    {
        if (asJson)
        {
            Console.WriteLine(JsonSerializer.Serialize(new EvacuationJson(from, to, result.Mode, result.Parallel, result.BandwidthBytesPerSecond,
                result.WallSeconds, result.SumOfMigrationSeconds, result.Reports, result.Skipped, neighbour, agentCost), MigrationReport.Json));
            return;
        }

        if (result.Reports.Count > 0)
        {
            Console.WriteLine(ReportTable.Render(result.Reports));
        }

        Console.WriteLine($"evacuated {result.Reports.Count(r => r.Outcome == MigrationOutcome.Completed)} of {result.Reports.Count} from {from} to {to} " +
                          $"({result.Skipped.Count} skipped) in {result.WallSeconds:0.0} s, {result.Parallel} at a time; the migrations' own times add up to {result.SumOfMigrationSeconds:0.0} s");
        if (agentCost is not null)
        {
            Console.WriteLine(AgentCost.Describe(agentCost));
        }

        if (neighbour is not null)
        {
            static string Mbit(double? bps) => bps is { } v ? (v * 8 / 1e6).ToString("0.0", CultureInfo.InvariantCulture) + " Mbit/s" : "-";
            Console.WriteLine($"neighbour stream: {Mbit(neighbour.BeforeBytesPerSecond)} before, {Mbit(neighbour.DuringBytesPerSecond)} during, {Mbit(neighbour.AfterBytesPerSecond)} after" +
                              (neighbour.Failure is { } f ? $" (it stopped: {f})" : ""));
        }
    }
}
