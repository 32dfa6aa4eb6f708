using System.CommandLine;
using System.Text.Json;
using GuideCopy.Cli.Configuration;
using GuideCopy.Lab;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Controller;
using GuideCopy.Migration.Journal;

namespace GuideCopy.Cli.Commands;

/// <summary>
/// Job control, as virsh domjobinfo / domjobabort: `guidecopy jobs`, `guidecopy job ID|DOMAIN`
/// and `guidecopy abort ID`, answered by the agents from their journals (a migration whose
/// controller is gone is still listed, followed and abortable).
/// </summary>
internal static class JobCommands
{
    private static Option<string[]> HostOption() => new("--host")
    {
        Description = "An agent to ask: lab:a, lab:NAME/b, a libvirt URI (its agent at tcp:HOST:7170) or an agent endpoint (unix:/path, tcp:HOST:PORT). Repeatable; default: this host's agent.",
        AllowMultipleArgumentsPerToken = true,
    };

    private static Option<string?> SecretOption() => new("--secret-file") { Description = "Shared secret of the agents (default Controller:SecretFile; the lab's own for lab: hosts)." };

    private static Option<bool> JsonOption() => new("--json") { Description = "Print JSON." };

    public static Command Jobs()
    {
        var hosts = HostOption();
        var secret = SecretOption();
        var json = JsonOption();
        var config = AgentCommand.ConfigOption();
        var cmd = new Command("jobs", "List running and recent migrations the agents know (their journals).") { hosts, secret, json, config };
        cmd.SetAction(async (p, ct) =>
        {
            var (results, errors) = await AskAll(p.GetValue(hosts) ?? [], p.GetValue(secret), p.GetValue(config), ct);
            if (p.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(results, Pretty));
            }
            else
            {
                Console.WriteLine($"{"ID",-30} {"HOST",-14} {"ROLE",-11} {"STAGE",-19} {"PAGES",-17} UPDATED");
                foreach (var (host, job) in results.SelectMany(r => r.Jobs.Select(j => (r.Host, j))))
                {
                    Console.WriteLine($"{job.Id,-30} {host,-14} {job.Role,-11} {job.Stage,-19} {Pages(job),-17} {job.UpdatedAt.ToLocalTime():yyyy-MM-dd HH:mm:ss}");
                }
            }

            return errors == 0 ? ExitCodes.Success : ExitCodes.Failure;
        });
        return cmd;
    }

    public static Command Job()
    {
        var idOrDomain = new Argument<string>("id") { Description = "A migration id (from the report, or 'guidecopy jobs'), or a domain name (its newest migration)." };
        var hosts = HostOption();
        var secret = SecretOption();
        var json = JsonOption();
        var config = AgentCommand.ConfigOption();
        var cmd = new Command("job", "Show one migration on every agent given: stage, pages done and left, rate, ETA, faults, the guide.") { idOrDomain, hosts, secret, json, config };
        cmd.SetAction(async (p, ct) =>
        {
            string key = p.GetValue(idOrDomain)!;
            var (results, _) = await AskAll(p.GetValue(hosts) ?? [], p.GetValue(secret), p.GetValue(config), ct);
            var all = results.SelectMany(r => r.Jobs.Select(j => (r.Host, Job: j))).ToList();
            string? id = all.Any(x => x.Job.Id == key) ? key : all.Where(x => x.Job.Domain == key).OrderByDescending(x => x.Job.StartedAt).Select(x => x.Job.Id).FirstOrDefault();
            var matches = all.Where(x => x.Job.Id == id).ToList();
            if (matches.Count == 0)
            {
                Console.Error.WriteLine($"guidecopy job: no migration '{key}' on the agents asked; 'guidecopy jobs --host ...' lists them");
                return ExitCodes.NotFound;
            }

            if (p.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(matches.Select(m => new { host = m.Host, job = m.Job }), Pretty));
                return ExitCodes.Success;
            }

            Console.WriteLine($"Migration {id} of {matches[0].Job.Domain}");
            foreach (var (host, j) in matches)
            {
                Console.WriteLine($"  {j.Role} ({host}): {j.Stage}{(j.Note is null ? "" : $" — {j.Note}")}");
                if (j.PagesTotal > 0)
                {
                    double rate = j.ElapsedSeconds > 0 ? j.PagesDone / j.ElapsedSeconds : 0;
                    string eta = rate > 0 && j.PagesDone < j.PagesTotal ? $", ETA {(j.PagesTotal - j.PagesDone) / rate:0} s" : "";
                    Console.WriteLine($"    pages {j.PagesDone}/{j.PagesTotal} ({100.0 * j.PagesDone / j.PagesTotal:0}%), left {j.PagesTotal - j.PagesDone}, {rate:0} pages/s{eta}");
                    Console.WriteLine($"    faults {j.Faults}, {j.BytesOnWire / (1024.0 * 1024):0.0} MiB received, {j.Reconnects} lane reconnects, {j.ElapsedSeconds:0.0} s");
                }

                if (j.Guide is not null)
                {
                    Console.WriteLine($"    guide: {j.Guide}");
                }

                Console.WriteLine($"    started {j.StartedAt.ToLocalTime():yyyy-MM-dd HH:mm:ss}, updated {j.UpdatedAt.ToLocalTime():HH:mm:ss}");
            }

            return ExitCodes.Success;
        });
        return cmd;
    }

    public static Command Abort()
    {
        var id = new Argument<string>("id") { Description = "The migration id." };
        var from = new Option<string>("--from") { Description = "Its source host (as for migrate).", Required = true };
        var to = new Option<string>("--to") { Description = "Its destination host.", Required = true };
        var secret = SecretOption();
        var cmd = new Command("abort", "Roll a migration back before its commit point (the source runs again); refused after it, saying why. " +
                                       "Exit codes: 0 rolled back, 12 refused (committed: the VM runs on the destination), 1 an agent unreachable.") { id, from, to, secret };
        cmd.SetAction(async (p, ct) =>
        {
            string migration = p.GetValue(id)!;
            if (!MigrationJournal.IsValidId(migration))
            {
                Console.Error.WriteLine($"guidecopy abort: '{migration}' is not a migration id (see 'guidecopy jobs')");
                return ExitCodes.Usage;
            }

            var src = MigrateCommand.ResolveTarget(p.GetValue(from)!, null, out string? srcSecret);
            var dst = MigrateCommand.ResolveTarget(p.GetValue(to)!, null, out string? dstSecret);
            byte[] key = SharedSecret.Read(p.GetValue(secret) ?? srcSecret ?? dstSecret ?? DefaultSecretFile());
            // The source first: once it has taken "rolled back", the destination can never resume.
            bool sourceRolledBack = false;
            try
            {
                await using var s = await AgentClient.ConnectAsync(src.Agent, key, ct);
                var r = await s.AbortAsync(new AbortRequest(migration), ct);
                sourceRolledBack = true;
                Console.WriteLine($"source: {r.Message}");
            }
            catch (AgentException e) when (e.Message.Contains("is committed", StringComparison.Ordinal))
            {
                Console.Error.WriteLine($"guidecopy abort: refused: {e.Message}");
                return ExitCodes.FailedAfterCommit;
            }
            catch (AgentException e)
            {
                Console.Error.WriteLine($"guidecopy abort: source: {e.Message}");
                if (e.ConnectionLost)
                {
                    return ExitCodes.Failure;
                }
            }

            try
            {
                await using var d = await AgentClient.ConnectAsync(dst.Agent, key, ct);
                var r = await d.AbortAsync(new AbortRequest(migration, sourceRolledBack), ct);
                Console.WriteLine($"destination: {r.Message}");
            }
            catch (AgentException e)
            {
                Console.WriteLine($"destination: {e.Message}");
            }

            return ExitCodes.Success;
        });
        return cmd;
    }

    private static string Pages(JobInfo j) => j.PagesTotal > 0 ? $"{j.PagesDone}/{j.PagesTotal}" : "-";

    private static readonly JsonSerializerOptions Pretty = new(ControlChannel.Json) { WriteIndented = true };

    private static string DefaultSecretFile(string? configFile = null) => GuideCopyConfiguration.Build(configFile, []).Section<ControllerOptions>("Controller").SecretFile;

    private static async Task<(List<JobsResult> Results, int Errors)> AskAll(string[] hosts, string? secretFile, string? configFile, CancellationToken ct)
    {
        var results = new List<JobsResult>();
        int errors = 0;
        var targets = new List<(string Name, AgentEndpoint Endpoint, string? LabSecret)>();
        if (hosts.Length == 0)
        {
            targets.Add(("local", new AgentEndpoint("/run/guidecopy/agent.sock", null, 0), null));
        }

        foreach (string h in hosts)
        {
            try
            {
                // An agent endpoint as such (unix:/path, tcp:HOST:PORT), or a host as for migrate.
                if (h.StartsWith("unix:", StringComparison.Ordinal) || h.StartsWith("tcp:", StringComparison.Ordinal))
                {
                    targets.Add((h, AgentEndpoint.Parse(h), null));
                }
                else
                {
                    var t = MigrateCommand.ResolveTarget(h, null, out string? labSecret);
                    targets.Add((h, t.Agent, labSecret));
                }
            }
            catch (Exception e) when (e is FormatException or LabException)
            {
                Console.Error.WriteLine($"guidecopy: {h}: {e.Message}");
                errors++;
            }
        }

        foreach (var (name, endpoint, labSecret) in targets)
        {
            try
            {
                byte[] key = SharedSecret.Read(secretFile ?? labSecret ?? DefaultSecretFile(configFile));
                await using var c = await AgentClient.ConnectAsync(endpoint, key, ct);
                var r = await c.JobsAsync(ct);
                results.Add(r with { Host = name });
            }
            catch (Exception e) when (e is AgentException or LabException or FormatException or ConfigurationException)
            {
                Console.Error.WriteLine($"guidecopy: {name}: {e.Message}");
                errors++;
            }
        }

        return (results, errors);
    }
}
