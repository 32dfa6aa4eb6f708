using System.CommandLine;
using GuideCopy.Cli.Configuration;
using GuideCopy.Cli.GuestWatch;
using GuideCopy.Lab;
using GuideCopy.Migration.Baselines;
using GuideCopy.Migration.Control;
using GuideCopy.Transport;
using GuideCopy.Migration.Controller;
using GuideCopy.Migration.Report;
using GuideCopy.Migration.Guide;

namespace GuideCopy.Cli.Commands;

/// <summary>`guidecopy migrate DOMAIN --from X --to Y [--mode ...]`: one migration and its report.</summary>
internal static class MigrateCommand
{
    public static readonly string[] Modes = ["guide", "precopy", "postcopy", "postcopy-at-once", "qemu-postcopy", "postcopy-preempt"];

    public static Command Create()
    {
        var domain = new Argument<string>("domain") { Description = "The running domain to move." };
        var from = new Option<string>("--from") { Description = "Source host: a libvirt URI (qemu+tcp://HOST/system) or lab:a / lab:NAME/a.", Required = true };
        var to = new Option<string>("--to") { Description = "Destination host, same forms as --from.", Required = true };
        var mode = new Option<string>("--mode") { Description = "guide (ours); libvirt's precopy, postcopy (switch after the first pass) or postcopy-at-once; QEMU's qemu-postcopy or postcopy-preempt (switched at once, over QMP).", DefaultValueFactory = _ => "guide" };
        mode.AcceptOnlyFromAmong(Modes);
        var bandwidth = new Option<string?>("--bandwidth") { Description = "Cap on the migration traffic: a plain number is MiB/s, as in virsh (100 = 100 MiB/s); or with a unit: 100mbit, 1gbit, 12MiB/s, 12MB/s. Guide mode never caps demand pages." };
        var timeout = new Option<double?>("--timeout") { Description = "Seconds: give up if the commit point is not reached by then (guide: roll back; precopy: abort); the VM stays on the source (exit 10 if nothing was paused yet, 11 if it was)." };
        var maxDowntime = new Option<double?>("--max-downtime") { Description = "Milliseconds. Guide mode: roll back (the source resumes, exit 11) rather than commit if the pause has lasted longer when the destination has loaded the device state. Libvirt modes: pre-copy's switchover target (virsh migrate-setmaxdowntime)." };
        var warmUp = new Option<double?>("--warm-up") { Description = "Seconds, at most. Guide mode: before the pause, send the pages the running VM does not write (its writes tracked through the shim; a QEMU started without it, or with GUIDECOPY_TRACK_WRITES unset, migrates without), until all went, the guest spoils them as fast as they go, or this limit. Each page crosses at most twice." };
        var keepDefinition = new Option<bool>("--keep-source-definition") { Description = "Keep a persistent domain's definition on the source, shut off (virsh migrate without --undefinesource). Default: removed, the definition moves." };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON (schema docs/report-schema.json); no progress output." };
        var fromAgent = new Option<string?>("--from-agent") { Description = "Source agent endpoint (unix:/path or tcp:host:port); default from --from." };
        var toAgent = new Option<string?>("--to-agent") { Description = "Destination agent endpoint; default from --to." };
        var secret = new Option<string?>("--secret-file") { Description = "Shared secret of the agents (default Controller:SecretFile, /etc/guidecopy/secret; the lab's own for lab: hosts)." };
        var observe = new Option<double>("--observe") { Description = "Seconds to keep watching the guest's heartbeats after completion, for the report.", DefaultValueFactory = _ => 5 };
        var guide = new Option<string>("--guide") { Description = "With --mode guide: run the guide clone on the source (on) or not (off: demand, locality and background only).", DefaultValueFactory = _ => "on" };
        guide.AcceptOnlyFromAmong("on", "off");
        var plot = new Option<string?>("--plot") { Description = "Write the guest's work over time to FILE (.svg or .png); guide mode also FILE's name with -pages: pages by route against the cap." };
        var insecure = InsecureLanesOption();
        var compress = CompressOption();
        var config = AgentCommand.ConfigOption();
        var cmd = new Command("migrate", "Migrate a running domain between two hosts and print the report.\n" + ExitCodes.MigrateHelp)
        {
            domain, from, to, mode, guide, bandwidth, timeout, maxDowntime, warmUp, keepDefinition, json, plot, fromAgent, toAgent, secret, observe, insecure, compress, config,
        };
        cmd.SetAction(async (p, ct) =>
        {
            bool asJson = p.GetValue(json);
            MigrationPlan plan;
            try
            {
                var cfg = GuideCopyConfiguration.Build(p.GetValue(config), []);
                var src = ResolveTarget(p.GetValue(from)!, p.GetValue(fromAgent), out string? srcSecret);
                var dst = ResolveTarget(p.GetValue(to)!, p.GetValue(toAgent), out string? dstSecret);
                var controller = cfg.Section<ControllerOptions>("Controller");
                string secretFile = p.GetValue(secret) ?? srcSecret ?? dstSecret ?? controller.SecretFile;
                byte[] secretBytes = p.GetValue(mode) == "guide" ? SharedSecret.Read(secretFile) : [];
                var guideOptions = cfg.Section<GuideOptions>("Guide");
                guideOptions.Enabled = p.GetValue(guide) == "on";
                if (p.GetValue(timeout) is <= 0 || p.GetValue(maxDowntime) is <= 0 || p.GetValue(warmUp) is <= 0)
                {
                    throw new ArgumentException("--timeout, --max-downtime and --warm-up take a positive number (seconds, milliseconds, seconds)");
                }
                plan = new MigrationPlan(p.GetValue(domain)!, src, dst, p.GetValue(mode)!, ParseBandwidth(p.GetValue(bandwidth)), secretBytes,
                    GuestWatch: new ConsoleGuestWatch(), ObserveAfter: TimeSpan.FromSeconds(p.GetValue(observe)), Guide: guideOptions, BeforeCommit: HoldBeforeCommit(), BeforeSwitchover: HoldBeforeSwitchover(ct),
                    ClearTextLanes: p.GetValue(insecure) || controller.InsecureLanes,
                    Timeout: p.GetValue(timeout) is { } t ? TimeSpan.FromSeconds(t) : null,
                    MaxDowntime: p.GetValue(maxDowntime) is { } md ? TimeSpan.FromMilliseconds(md) : null,
                    KeepSourceDefinition: p.GetValue(keepDefinition),
                    Compression: Compression(p.GetValue(compress), controller),
                    WarmUp: p.GetValue(warmUp) is { } w ? TimeSpan.FromSeconds(w) : null);
            }
            catch (Exception e) when (e is LabException or AgentException or FormatException or ArgumentException or ConfigurationException)
            {
                Console.Error.WriteLine($"guidecopy migrate: {e.Message}");
                return ExitCodes.Usage;
            }

            var report = await RunAsync(plan, showProgress: !asJson, ct);
            PrintReport(report, asJson, p.GetValue(plot));
            return ExitCodes.For(report.Outcome);
        });
        return cmd;
    }

    /// <summary>The report (table or JSON) on stdout; the pictures if asked for, and the error line, on stderr.</summary>
    private static void PrintReport(MigrationReport report, bool asJson, string? plot)
    {
        Console.WriteLine(asJson ? report.ToJson() : ReportTable.Render([report]));
        if (plot is { } file && report.Timeline is not null)
        {
            foreach (string written in Pictures.ForMigrate(report, file))
            {
                Console.Error.WriteLine($"guidecopy migrate: wrote {written}");
            }
        }
        if (!asJson && report.Error is not null)
        {
            Console.Error.WriteLine($"guidecopy migrate: {report.Outcome}: {report.Error}");
        }
    }

    /// <summary>
    /// Fault injection for the fault matrix (GUIDECOPY_FAULT_HOLD=before-switchover): everything
    /// armed, nothing paused, held until the operator's interrupt, which must then roll back.
    /// Since the destination commits on its own the moment it has loaded, the window between
    /// "prepared" and the pause is too short to aim a signal at without this.
    /// </summary>
    private static Func<Task>? HoldBeforeSwitchover(CancellationToken ct) =>
        Environment.GetEnvironmentVariable("GUIDECOPY_FAULT_HOLD") == "before-switchover"
            ? () =>
            {
                Console.Error.WriteLine("guidecopy migrate: holding before the switchover (GUIDECOPY_FAULT_HOLD)");
                return Task.Delay(Timeout.Infinite, ct);
            }
            : null;

    /// <summary>
    /// Fault injection for the fault-matrix tests (GUIDECOPY_FAULT_HOLD=before-commit): the
    /// controller stops between the device-state load and the resume, so a test can kill it in
    /// the one window where only the agents' lease can undo the migration. Unset in normal use.
    /// </summary>
    private static Func<Task>? HoldBeforeCommit() =>
        Environment.GetEnvironmentVariable("GUIDECOPY_FAULT_HOLD") == "before-commit"
            ? () =>
            {
                Console.Error.WriteLine("guidecopy migrate: holding before the commit point (GUIDECOPY_FAULT_HOLD)");
                return Task.Delay(Timeout.Infinite);
            }
            : null;

    /// <summary>Runs one migration in the plan's mode, with progress on a terminal's stderr.</summary>
    internal static async Task<MigrationReport> RunAsync(MigrationPlan plan, bool showProgress, CancellationToken ct)
    {
        var progress = showProgress && !Console.IsErrorRedirected ? new TerminalProgress() : null;
        var report = plan.Mode == "guide"
            ? await new GuideCopyMigration(plan, progress is null ? null : progress.Show).RunAsync(ct)
            : await LibvirtModeMigration.RunAsync(plan, BaselineModeNames.Parse(plan.Mode), ct);
        progress?.Done();
        return report;
    }

    /// <summary>lab:a, lab:NAME/a, or a libvirt URI (the agent is then found at the URI's host).</summary>
    /// <summary>Guide mode's page packing: the same option for migrate and compare.</summary>
    internal static Option<string?> CompressOption()
    {
        var o = new Option<string?>("--compress")
        {
            Description = "Guide mode: LZ4-pack page runs on the lanes: auto (where it shortens their time on the link, measured as the migration goes), lz4 (always), off. Default: Controller:Compression (auto).",
        };
        o.AcceptOnlyFromAmong("auto", "lz4", "off");
        return o;
    }

    /// <summary>--compress if given, else the configuration's Controller:Compression.</summary>
    internal static PageCompression Compression(string? flag, ControllerOptions controller) =>
        Enum.Parse<PageCompression>(flag ?? controller.Compression, ignoreCase: true);

    /// <summary>Guide mode's page lanes in clear text: the same option for migrate, compare and demo.</summary>
    internal static Option<bool> InsecureLanesOption() => new("--insecure-lanes")
    {
        Description = "Send guide mode's pages without encryption (still authenticated at each lane's handshake): only on a closed lab link. Default: AEGIS-256. Config: Controller:InsecureLanes.",
    };

    internal static MigrationTarget ResolveTarget(string text, string? agentOverride, out string? secretFile)
    {
        secretFile = null;
        if (LabTarget(text) is var (lab, host))
        {
            secretFile = lab.SecretFile;
            return new MigrationTarget(text, host.LibvirtUri,
                agentOverride is null ? new AgentEndpoint(host.AgentSocket, null, 0) : AgentEndpoint.Parse(agentOverride),
                host.PeerLibvirtUri, host.Address);
        }

        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || !uri.Scheme.StartsWith("qemu", StringComparison.Ordinal))
        {
            throw new FormatException($"'{text}' is neither a libvirt URI (qemu+tcp://HOST/system, qemu:///system) nor lab:HOST");
        }

        bool local = string.IsNullOrEmpty(uri.Host);
        var agent = agentOverride is not null ? AgentEndpoint.Parse(agentOverride)
            : local ? new AgentEndpoint("/run/guidecopy/agent.sock", null, 0)
            : new AgentEndpoint(null, uri.Host, AgentEndpoint.DefaultControlPort);
        return new MigrationTarget(text, text, agent, text, local ? null : uri.Host);
    }

    /// <summary>The lab and host a lab:a or lab:NAME/a target names; null for a libvirt URI.</summary>
    internal static (LabRig Lab, LabHost Host)? LabTarget(string text)
    {
        if (!text.StartsWith("lab:", StringComparison.Ordinal))
        {
            return null;
        }

        string rest = text[4..];
        string labName = rest.Contains('/') ? rest[..rest.IndexOf('/')] : LabRig.NameFromEnvironment();
        string hostName = rest.Contains('/') ? rest[(rest.IndexOf('/') + 1)..] : rest;
        var lab = LabRig.Attach(labName);
        var host = lab.Hosts.FirstOrDefault(h => h.Name == hostName)
            ?? throw new LabException($"lab '{labName}' has no host '{hostName}': use a or b");
        return (lab, host);
    }

    /// <summary>A plain number is MiB/s (virsh's unit); or 100mbit, 1gbit, 12MiB/s, 12MB/s, 12M (10^6 bytes/s), 500B/s.</summary>
    internal static long ParseBandwidth(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return 0;
        }

        var m = System.Text.RegularExpressions.Regex.Match(text.Trim(), @"^(\d+(?:\.\d+)?)\s*([kmg]?)(bit|bps|b/s|ib/s|ib|i|b)?$", System.Text.RegularExpressions.RegexOptions.IgnoreCase);
        if (!m.Success)
        {
            throw new FormatException($"bandwidth '{text}' is not a rate: use e.g. 100mbit, 1gbit or 12MiB/s");
        }

        double value = double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        string prefix = m.Groups[2].Value.ToLowerInvariant();
        string unit = m.Groups[3].Value.ToLowerInvariant();
        if (prefix.Length == 0 && unit.Length == 0)
        {
            // virsh migrate --bandwidth and migrate-setspeed count in MiB/s.
            return (long)(value * 1024 * 1024);
        }

        bool bits = unit == "bit";
        bool binary = unit.StartsWith('i');
        double scale = prefix switch
        {
            "k" => binary ? 1024 : 1000,
            "m" => binary ? 1024 * 1024 : 1_000_000,
            "g" => binary ? 1024.0 * 1024 * 1024 : 1_000_000_000,
            _ => 1,
        };
        return (long)(value * scale / (bits ? 8 : 1));
    }

    private sealed class TerminalProgress
    {
        private bool _shown;

        public void Show(MigrationProgress p)
        {
            string line = p.PagesTotal > 0
                ? $"{p.Phase}: {p.PagesDone}/{p.PagesTotal} pages ({100.0 * p.PagesDone / p.PagesTotal:0}%), {p.Faults} faults, {p.BytesOnWire / (1024.0 * 1024):0.0} MiB, {p.Seconds:0.0} s"
                : $"{p.Phase} ... {p.Seconds:0.0} s";
            Console.Error.Write("\r\x1b[K" + line);
            _shown = true;
        }

        public void Done()
        {
            if (_shown)
            {
                Console.Error.WriteLine();
            }
        }
    }
}
