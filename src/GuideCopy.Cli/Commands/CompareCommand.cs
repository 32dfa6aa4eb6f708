using System.CommandLine;
using System.Text.Json;
using GuideCopy.Cli.Configuration;
using GuideCopy.Cli.GuestWatch;
using GuideCopy.Cli.HostCost;
using GuideCopy.Lab;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Controller;
using GuideCopy.Migration.Guide;
using GuideCopy.Migration.Report;
using GuideCopy.Migration.Control;
using GuideCopy.Transport;

namespace GuideCopy.Cli.Commands;

/// <summary>
/// `guidecopy compare`: the same guest migrated back and forth between two lab hosts once per
/// mode, in one run, reports side by side — every mode judged on the same terms (the guest's
/// own throughput, downtime, bytes, destination faults and stalls).
/// </summary>
internal static class CompareCommand
{
    public static readonly string[] Variants = ["guide-on", "guide-off", "guide-warm", "guide-on-lz4", "guide-on-raw", "precopy", "postcopy", "postcopy-at-once", "qemu-postcopy", "postcopy-preempt"];

    public static Command Create()
    {
        var workload = LabCommand.WorkloadOption();
        var modes = new Option<string>("--modes") { Description = $"Comma-separated, in order: {string.Join(", ", Variants)}.", DefaultValueFactory = _ => "guide-off,guide-on,postcopy-at-once,postcopy,precopy" };
        var rate = new Option<string?>("--rate") { Description = "Cap the lab link with tc tbf for the whole comparison (e.g. 100mbit)." };
        var bandwidth = new Option<string?>("--bandwidth") { Description = "Migration bandwidth cap passed to every mode (e.g. 80mbit)." };
        var memory = new Option<int>("--memory") { Description = "Guest RAM in MiB.", DefaultValueFactory = _ => 512 };
        var settle = new Option<double>("--settle") { Description = "Seconds the guest runs between migrations.", DefaultValueFactory = _ => 12 };
        var json = new Option<bool>("--json") { Description = "Print the reports as a JSON array." };
        var timeout = new Option<double>("--timeout") { Description = "Seconds after which a pre-copy that has not converged is aborted (the guest stays where it was).", DefaultValueFactory = _ => 180 };
        var guestArgs = new Option<string?>("--guest-args") { Description = "More guest kernel command-line keys, e.g. 'gc.verify_every=64 gc.ws=32'." };
        var plot = new Option<string?>("--plot") { Description = "Write the pictures of this run into DIR: guest-work.svg (one line per mode), stalls.svg, pages-N-MODE.svg (guide mode, by route against the cap)." };
        var name = LabCommand.NameOption();
        var compress = MigrateCommand.CompressOption();
        var config = AgentCommand.ConfigOption();
        var vcpus = LabCommand.VcpusOption();
        var hugePages = LabCommand.HugePagesOption();
        var cmd = new Command("compare", "Migrate one lab guest back and forth once per mode and print the reports side by side.")
        {
            workload, modes, rate, bandwidth, memory, settle, json, guestArgs, timeout, plot, name, compress, config, vcpus, hugePages,
        };
        cmd.SetAction(async (p, ct) =>
        {
            string labName = p.GetValue(name)!;
            var list = p.GetValue(modes)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            if (list.FirstOrDefault(m => !Variants.Contains(m)) is { } bad)
            {
                Console.Error.WriteLine($"guidecopy compare: unknown mode '{bad}': use {string.Join(", ", Variants)}");
                return ExitCodes.Usage;
            }

            GuideOptions guideOptions;
            PageCompression compression;
            try
            {
                var cfg = GuideCopyConfiguration.Build(p.GetValue(config), []);
                guideOptions = cfg.Section<GuideOptions>("Guide");
                compression = MigrateCommand.Compression(p.GetValue(compress), cfg.Section<ControllerOptions>("Controller"));
            }
            catch (ConfigurationException e)
            {
                Console.Error.WriteLine($"guidecopy compare: {e.Message}");
                return ExitCodes.Usage;
            }

            var plan = new ComparisonPlan(labName, list, p.GetValue(workload)!, p.GetValue(memory), p.GetValue(guestArgs), p.GetValue(rate),
                p.GetValue(bandwidth), p.GetValue(settle), p.GetValue(timeout), p.GetValue(json), p.GetValue(plot), guideOptions, compression,
                p.GetValue(vcpus), p.GetValue(hugePages));
            return await RunAsync(plan, ct);
        });
        return cmd;
    }

    /// <summary>Boots the guest on lab host a, then migrates it once per variant, each from where the last one left it.</summary>
    private static async Task<int> RunAsync(ComparisonPlan plan, CancellationToken ct)
    {
        bool created = false;
        var reports = new List<MigrationReport>();
        try
        {
            var lab = LabCommand.EnsureLabWithAgents(plan.LabName, out created, hugePages: plan.HugePages);
            lab.SetLinkRate(plan.Rate);
            var spec = new TestGuestSpec($"cmp-{plan.Workload}", plan.Workload, plan.MemoryMiB, ExtraCmdline: plan.GuestArgs,
                Vcpus: plan.Vcpus);
            TestGuest.Remove(lab, spec.Name);
            var guest = TestGuest.Boot(lab, lab.A, spec);
            guest.WaitForHeartbeats(3, TimeSpan.FromSeconds(120));
            var secret = SharedSecret.Read(lab.SecretFile);
            string here = "a";
            foreach (var variant in plan.Variants)
            {
                // The guest runs undisturbed before each migration: the "before" window.
                await Task.Delay(TimeSpan.FromSeconds(plan.SettleSeconds), ct);
                string there = here == "a" ? "b" : "a";
                using var cost = variant.StartsWith("guide", StringComparison.Ordinal) ? AgentCost.Start(lab) : null;
                var report = await MigrateOnceAsync(plan, variant, spec.Name, here, there, secret, ct);
                if (cost?.Stop() is { } figures)
                {
                    report = AgentCost.AddTo(report, figures);
                    Console.Error.WriteLine($"compare: {variant}: {AgentCost.Describe(figures)}");
                }

                reports.Add(report);
                Console.Error.WriteLine($"compare: {variant}: {report.Outcome}, {report.TotalSeconds:0.0} s, downtime {report.DowntimeMs:0} ms (QEMU clocks {report.DowntimeByQemuClocksMs:0} ms), " +
                    $"faults {report.DestinationFaults?.Faults}, stall {report.DestinationFaults?.StallTotalMs:0} ms, " +
                    $"guest {report.Guest?.DuringRelative:P0} of its rate in the 20 s after, " +
                    $"lost {report.Guest?.LostWorkSeconds:0.0} s of work in {report.Guest?.LostWorkWindowSeconds:0} s, longest pause {report.Guest?.LongestPauseSeconds:0.0} s");
                if (report.Outcome == MigrationOutcome.Completed)
                {
                    here = there;
                }
                else
                {
                    // A rolled-back or refused mode leaves the guest where it was: go on from there.
                    Console.Error.WriteLine($"compare: {variant} did not complete: {report.Error}");
                }
            }

            PrintReports(reports, plan.Json, plan.PlotDir);
            return reports.All(r => r.Outcome == MigrationOutcome.Completed && r.Guest?.ChecksOk != false) ? ExitCodes.Success : ExitCodes.Failure;
        }
        catch (Exception e) when (e is LabException or TimeoutException)
        {
            Console.Error.WriteLine($"guidecopy compare: {e.Message}");
            return ExitCodes.Failure;
        }
        finally
        {
            if (created)
            {
                LabRig.Down(plan.LabName);
            }
            else if (LabRig.TryAttach(plan.LabName) is { } lab)
            {
                TestGuest.Remove(lab, $"cmp-{plan.Workload}");
            }
        }
    }

    /// <summary>One variant's migration of the guest from lab host <paramref name="here"/> to <paramref name="there"/>.</summary>
    private static async Task<MigrationReport> MigrateOnceAsync(ComparisonPlan plan, string variant, string guestName, string here, string there,
        byte[] secret, CancellationToken ct)
    {
        var guideOptions = plan.Guide;
        var g = new GuideOptions
        {
            Enabled = variant.StartsWith("guide-on", StringComparison.Ordinal) || variant == "guide-warm", TimeLimitSeconds = guideOptions.TimeLimitSeconds, IdleSeconds = guideOptions.IdleSeconds,
            MissWindowSeconds = guideOptions.MissWindowSeconds, MissShare = guideOptions.MissShare, MinMisses = guideOptions.MinMisses,
            LeadPages = guideOptions.LeadPages, OutrunRatio = guideOptions.OutrunRatio, ReadAheadPages = guideOptions.ReadAheadPages,
        };
        var migration = new MigrationPlan(guestName,
            MigrateCommand.ResolveTarget($"lab:{plan.LabName}/{here}", null, out _),
            MigrateCommand.ResolveTarget($"lab:{plan.LabName}/{there}", null, out _),
            variant.StartsWith("guide", StringComparison.Ordinal) ? "guide" : variant,
            MigrateCommand.ParseBandwidth(plan.Bandwidth), secret, GuestWatch: new ConsoleGuestWatch(coverLostWork: true), ObserveAfter: TimeSpan.FromSeconds(5), Guide: g,
            Timeout: TimeSpan.FromSeconds(plan.TimeoutSeconds),
            Compression: variant switch { "guide-on-lz4" => PageCompression.Lz4, "guide-on-raw" => PageCompression.Off, _ => plan.Compression },
            WarmUp: variant == "guide-warm" ? TimeSpan.FromSeconds(plan.TimeoutSeconds / 2) : null);
        Console.Error.WriteLine($"compare: {variant}: {guestName} {here} -> {there}");
        return await MigrateCommand.RunAsync(migration, showProgress: !plan.Json, ct);
    }

    /// <summary>The reports side by side (table or JSON array) on stdout, and the run's pictures if asked for.</summary>
    private static void PrintReports(List<MigrationReport> reports, bool json, string? plotDir)
    {
        Console.WriteLine(json ? JsonSerializer.Serialize(reports, MigrationReport.Json) : ReportTable.Render(reports));
        if (plotDir is { } dir)
        {
            foreach (string file in Pictures.ForCompare(reports, dir))
            {
                Console.Error.WriteLine($"compare: wrote {file}");
            }
        }
    }
}
