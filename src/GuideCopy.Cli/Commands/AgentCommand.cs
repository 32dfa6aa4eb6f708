using System.CommandLine;
using GuideCopy.Cli.Configuration;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Host;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace GuideCopy.Cli.Commands;

/// <summary>
/// `guidecopy agent`: the per-host service (root). Runs under systemd (Type=notify through
/// Microsoft.Extensions.Hosting.Systemd) or in the foreground; logs to stdout/journald.
/// </summary>
internal static class AgentCommand
{
    public static Option<string?> ConfigOption() => new("--config") { Description = $"Configuration file (default $GUIDECOPY_CONFIG or {GuideCopyConfiguration.DefaultFile})." };

    public static Option<string[]> SetOption() => new("--set")
    {
        Description = "Override a setting: Section:Key=value (e.g. Agent:PageListen=0.0.0.0:7171). Repeatable.",
        AllowMultipleArgumentsPerToken = true,
    };

    public static Command Create()
    {
        var config = ConfigOption();
        var set = SetOption();
        var cmd = new Command("agent", "Run the per-host agent: page server, pager, shim handshakes and this host's libvirt steps.") { config, set };
        cmd.SetAction(async (p, ct) =>
        {
            AgentOptions options;
            try
            {
                options = GuideCopyConfiguration.Build(p.GetValue(config), p.GetValue(set) ?? []).Section<AgentOptions>("Agent");
                _ = SharedSecret.Read(options.SecretFile);
            }
            catch (Exception e) when (e is AgentException or ConfigurationException or IOException)
            {
                Console.Error.WriteLine($"guidecopy agent: {e.Message}");
                return ExitCodes.Usage;
            }

            var builder = Host.CreateApplicationBuilder();
            builder.Services.AddSystemd();
            builder.Logging.ClearProviders();
            // JOURNAL_STREAM: systemd sets it when stdout goes to journald (systemd.exec(5)), also
            // for `systemd-run` and `systemd-cat`, where the parent check below does not hold.
            if (SystemdHelpers.IsSystemdService() || Environment.GetEnvironmentVariable("JOURNAL_STREAM") is { Length: > 0 })
            {
                // "<N>" before each line: journald takes it as the PRIORITY (SyslogLevelPrefix=,
                // systemd.exec(5)) and adds its own timestamp, so the line carries none.
                builder.Logging.AddSystemdConsole();
            }
            else
            {
                builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
            }

            builder.Services.AddSingleton(options);
            builder.Services.AddHostedService<AgentHostedService>();
            using var host = builder.Build();
            await host.RunAsync(ct);
            return ExitCodes.Success;
        });
        return cmd;
    }

    private sealed class AgentHostedService(AgentOptions options, ILoggerFactory loggers, IHostApplicationLifetime lifetime) : BackgroundService
    {
        // One short category: it opens every journal line ("agent[0] migration=... stage=..."),
        // where the class name would repeat 60 characters of namespace on each.
        private readonly ILogger logger = loggers.CreateLogger("agent");

        protected override async Task ExecuteAsync(CancellationToken stoppingToken)
        {
            var metrics = StartMetrics();
            try
            {
                var server = new AgentServer(options, new AgentLog(logger));
                await server.RunAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogCritical("agent stopped: {Message}", e.Message);
                Environment.ExitCode = ExitCodes.Failure;
                lifetime.StopApplication();
            }
            finally
            {
                StopMetrics(metrics);
            }
        }

        /// <summary>
        /// Closing HttpListener looks its endpoint up again, and throws when the address is gone
        /// (a link taken down before the agent stops: EADDRNOTAVAIL); the metrics are lost either
        /// way, so this is a warning, not a failed stop.
        /// </summary>
        private void StopMetrics(MetricServer? metrics)
        {
            try
            {
                metrics?.Dispose();
            }
            catch (System.Net.HttpListenerException e)
            {
                logger.LogWarning("metrics listener closed with an error (was its address removed?): {Message}", e.Message);
            }
        }

        /// <summary>
        /// prometheus-net's HttpListener server: its meter adapter publishes every
        /// System.Diagnostics.Metrics instrument, AgentMetrics' among them. A port that cannot be
        /// bound costs the metrics only, never a migration.
        /// </summary>
        private MetricServer? StartMetrics()
        {
            try
            {
                if (options.MetricsEndpoint() is not { } ep)
                {
                    return null;
                }

                AgentMetrics.Publish();
                var server = new MetricServer(ep.Address, ep.Port);
                server.Start();
                logger.LogInformation("metrics on http://{Address}:{Port}/metrics", ep.Address, ep.Port);
                return server;
            }
            catch (Exception e) when (e is System.Net.HttpListenerException or FormatException or InvalidOperationException)
            {
                logger.LogError("no metrics: cannot listen on Agent:MetricsListen '{Listen}': {Message}", options.MetricsListen, e.Message);
                return null;
            }
        }
    }
}
