using System.CommandLine;
using GuideCopy.Cli.Configuration;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

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
                _ = AgentServer.ReadSecret(options.SecretFile);
            }
            catch (Exception e) when (e is AgentException or ArgumentException or InvalidOperationException or IOException)
            {
                Console.Error.WriteLine($"guidecopy agent: {e.Message}");
                return ExitCodes.Usage;
            }

            var builder = Host.CreateApplicationBuilder();
            builder.Services.AddSystemd();
            builder.Logging.ClearProviders();
            builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
            builder.Services.AddSingleton(options);
            builder.Services.AddHostedService<AgentHostedService>();
            using var host = builder.Build();
            await host.RunAsync(ct);
            return ExitCodes.Success;
        });
        return cmd;
    }

    private sealed class AgentHostedService(AgentOptions options, ILogger<AgentHostedService> logger, IHostApplicationLifetime lifetime) : BackgroundService
    {
        protected override async Task ExecuteAsync(CancellationToken stoppingToken)
        {
            try
            {
                var server = new AgentServer(options, m => logger.LogInformation("{Message}", m));
                await server.RunAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogCritical("agent stopped: {Message}", e.Message);
                Environment.ExitCode = ExitCodes.Failure;
                lifetime.StopApplication();
            }
        }
    }
}
