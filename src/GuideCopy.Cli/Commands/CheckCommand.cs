using System.CommandLine;
using System.Text.Json;
using GuideCopy.Cli.Configuration;
using GuideCopy.Lab;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Controller;

namespace GuideCopy.Cli.Commands;

/// <summary>
/// `guidecopy check DOMAIN --from X --to Y`: guide mode's preflight alone, for Ansible's check
/// mode and for an operator before a maintenance window. Nothing is paused, started or journaled.
/// </summary>
internal static class CheckCommand
{
    public static Command Create()
    {
        var domain = new Argument<string>("domain") { Description = "The running domain that would move." };
        var from = new Option<string>("--from") { Description = "Source host, as for migrate.", Required = true };
        var to = new Option<string>("--to") { Description = "Destination host, as for migrate.", Required = true };
        var secret = new Option<string?>("--secret-file") { Description = "Shared secret of the agents (default Controller:SecretFile; the lab's own for lab: hosts)." };
        var json = new Option<bool>("--json") { Description = "Print {\"domain\", \"ok\", \"problems\": [...]} on stdout." };
        var config = AgentCommand.ConfigOption();
        var cmd = new Command("check", "Run guide mode's preflight alone: the domain, both agents and both hosts checked, nothing paused.\n" +
                                       "Exit codes: 0 the migration may go ahead; 10 refused (each problem on its own line, or in the JSON array, naming its fix); " +
                                       "1 an agent or libvirtd unreachable; 2 usage or configuration error.")
        {
            domain, from, to, secret, json, config,
        };
        cmd.SetAction(async (p, ct) =>
        {
            MigrationPlan plan;
            try
            {
                var controller = GuideCopyConfiguration.Build(p.GetValue(config), []).Section<ControllerOptions>("Controller");
                var src = MigrateCommand.ResolveTarget(p.GetValue(from)!, null, out string? srcSecret);
                var dst = MigrateCommand.ResolveTarget(p.GetValue(to)!, null, out string? dstSecret);
                byte[] key = SharedSecret.Read(p.GetValue(secret) ?? srcSecret ?? dstSecret ?? controller.SecretFile);
                plan = new MigrationPlan(p.GetValue(domain)!, src, dst, "guide", 0, key);
            }
            catch (Exception e) when (e is LabException or AgentException or FormatException or ArgumentException or ConfigurationException)
            {
                Console.Error.WriteLine($"guidecopy check: {e.Message}");
                return ExitCodes.Usage;
            }

            IReadOnlyList<string> problems;
            try
            {
                problems = await new GuideCopyMigration(plan, null).CheckAsync(ct);
            }
            catch (AgentException e) when (e.ConnectionLost)
            {
                Console.Error.WriteLine($"guidecopy check: {e.Message}");
                return ExitCodes.Failure;
            }
            catch (AgentException e)
            {
                // The agent answered, and its answer rules the migration out (e.g. no such domain).
                problems = [e.Message];
            }

            PrintProblems(plan, problems, p.GetValue(json));
            return problems.Count == 0 ? ExitCodes.Success : ExitCodes.Refused;
        });
        return cmd;
    }

    /// <summary>The preflight's verdict on stdout: one line per problem (or "ready"), or the JSON object.</summary>
    private static void PrintProblems(MigrationPlan plan, IReadOnlyList<string> problems, bool json)
    {
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new { domain = plan.Domain, ok = problems.Count == 0, problems }));
        }
        else if (problems.Count == 0)
        {
            Console.WriteLine($"{plan.Domain}: ready to migrate from {plan.From.Name} to {plan.To.Name}");
        }
        else
        {
            foreach (string problem in problems)
            {
                Console.WriteLine($"{plan.Domain}: {problem}");
            }
        }
    }
}
