using System.CommandLine;
using System.Runtime.InteropServices;
using GuideCopy.Migration.Host;
using GuideCopy.Transport;

namespace GuideCopy.Cli.Commands;

/// <summary>
/// `guidecopy pages serve|receive`: each end of the memory plane as its own process, for
/// debugging and operators (the agent runs the same parts in-process). Output lines start with
/// LISTENING, REGISTERED, DONE, COUNTERS, LOG or ERROR (docs/memory-plane.md).
/// </summary>
internal static class PagesCommand
{
    public static Command Create()
    {
        var command = new Command("pages", "Memory plane ends as separate processes: serve a frozen RAM file, or receive into a shim-registered mapping.");
        command.Subcommands.Add(Serve());
        command.Subcommands.Add(Receive());
        return command;
    }

    /// <summary>--demand-priority, defaulting to the agent's Agent:DemandRealtimePriority (also used by bench).</summary>
    internal static Option<int> DemandPriority() => new("--demand-priority")
    {
        Description = "SCHED_FIFO priority of the demand-path threads, 0: fair class (as Agent:DemandRealtimePriority).",
        DefaultValueFactory = _ => new AgentOptions().DemandRealtimePriority,
    };

    /// <summary>Both ends derive the migration key from the secret file and this id, as the agents do.</summary>
    private static Option<string> MigrationId() => new("--migration-id") { Description = "Migration id both ends bind their keys to.", DefaultValueFactory = _ => "pages" };

    private static Option<bool> InsecureLanes() => new("--insecure-lanes") { Description = "Clear-text frames after the handshake (both ends must agree): measures what the encryption costs." };

    private static byte[] Key(ParseResult p, Option<string> secret, Option<string> id) =>
        LaneKeys.ForMigration(Handshake.ReadSecretFile(p.GetValue(secret)!), p.GetValue(id)!);

    private static LaneProtection Protection(ParseResult p, Option<bool> insecure) =>
        p.GetValue(insecure) ? LaneProtection.ClearText : LaneProtection.Sealed;

    private static Option<string> SecretFile() => new("--secret-file") { Description = "File holding the shared secret (trailing newline ignored).", Required = true };

    private static Command Serve()
    {
        var file = new Option<string>("--file") { Description = "The frozen RAM file (source domain paused).", Required = true };
        var listen = new Option<string>("--listen") { Description = "ADDR:PORT to listen on.", DefaultValueFactory = _ => $"0.0.0.0:{PageServerOptions.DefaultPort}" };
        var secret = SecretFile();
        var bandwidth = new Option<string?>("--bandwidth") { Description = "Cap on pushed bytes/s (e.g. 12M, 100mbit); demand pages are never capped." };
        var pageSize = new Option<int>("--page-size") { Description = "Page size in bytes (2097152 for hugetlbfs).", DefaultValueFactory = _ => 4096 };
        var noPush = new Option<bool>("--no-push") { Description = "Serve demand only (measures remote fault latency)." };
        var progress = new Option<int>("--progress-ms") { Description = "Print COUNTERS every N ms (0: only at the end)." };
        var demandPriority = DemandPriority();
        var id = MigrationId();
        var insecure = InsecureLanes();
        var cmd = new Command("serve", "Serve a frozen RAM file to one destination pager.") { file, listen, secret, bandwidth, pageSize, noPush, progress, demandPriority, id, insecure };
        cmd.SetAction(async (p, ct) =>
        {
            var options = new PageServerOptions
            {
                Secret = Key(p, secret, id),
                Protection = Protection(p, insecure),
                Listen = LaneEndpoint.Parse(p.GetValue(listen)!),
                BandwidthBytesPerSecond = p.GetValue(bandwidth) is { } b ? PagesHost.ParseRate(b) : 0,
                PageSize = p.GetValue(pageSize),
                PushEnabled = !p.GetValue(noPush),
                DemandRealtimePriority = p.GetValue(demandPriority),
            };
            using var cts = CancelOnSigterm(ct);
            return await PagesHost.ServeAsync(p.GetValue(file)!, options, Console.Out, cts.Token, p.GetValue(progress));
        });
        return cmd;
    }

    private static Command Receive()
    {
        var socket = new Option<string>("--agent-socket") { Description = "UNIX socket the shim connects to (GUIDECOPY_AGENT_SOCKET).", DefaultValueFactory = _ => "/run/guidecopy/shim.sock" };
        var source = new Option<string>("--source") { Description = "ADDR:PORT of `guidecopy pages serve`.", Required = true };
        var secret = SecretFile();
        var once = new Option<bool>("--once") { Description = "Exit after the first registration is done." };
        var linkTimeout = new Option<int>("--link-timeout-ms") { Description = "Reconnect a lane silent this long.", DefaultValueFactory = _ => 3000 };
        var demandPriority = DemandPriority();
        var id = MigrationId();
        var insecure = InsecureLanes();
        var cmd = new Command("receive", "Take uffds from the shim and fill them from a page server.") { socket, source, secret, once, linkTimeout, demandPriority, id, insecure };
        cmd.SetAction(async (p, ct) =>
        {
            using var cts = CancelOnSigterm(ct);
            return await PagesHost.ReceiveAsync(p.GetValue(socket)!, LaneEndpoint.Parse(p.GetValue(source)!),
                Key(p, secret, id), new PagerOptions { LinkTimeoutMs = p.GetValue(linkTimeout), DemandRealtimePriority = p.GetValue(demandPriority), Protection = Protection(p, insecure) },
                p.GetValue(once), Console.Out, cts.Token);
        });
        return cmd;
    }

    /// <summary>SIGTERM ends the loop normally so the final counters are printed.</summary>
    internal static CancellationTokenSource CancelOnSigterm(CancellationToken ct)
    {
        var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var reg = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; cts.Cancel(); });
        cts.Token.Register(() => reg.Dispose());
        return cts;
    }
}
