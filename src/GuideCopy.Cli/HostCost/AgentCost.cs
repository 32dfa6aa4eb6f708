using System.Globalization;
using System.Text.Json;
using GuideCopy.Lab;
using GuideCopy.Migration.Report;

namespace GuideCopy.Cli.HostCost;

/// <summary>What one host's agent cost while migrations ran: CPU time (user + system) and its largest resident set.</summary>
public sealed record AgentCostFigures(double CpuSeconds, double RssMaxMiB);

/// <summary>
/// Samples the lab agents' cost from /proc while migrations run: utime + stime of
/// /proc/PID/stat (proc(5), in clock ticks) at start and stop, and VmRSS of /proc/PID/status
/// every 200 ms for the peak (VmHWM would be the peak since the agent started, not of this run).
/// The agents do all of guide mode's page work on both hosts; QEMU's own modes do theirs inside
/// QEMU, whose CPU time cannot be told apart from the guest's, so this is guide mode's figure.
/// </summary>
internal sealed class AgentCost : IDisposable
{
    /// <summary>USER_HZ: 100 on every Linux ABI .NET runs on (sysconf(_SC_CLK_TCK)).</summary>
    private const double TicksPerSecond = 100;

    private readonly Dictionary<string, int> _pids;
    private readonly Dictionary<string, long> _startTicks;
    private readonly Dictionary<string, long> _rssMaxKiB;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _sampler;

    private AgentCost(LabRig lab)
    {
        _pids = lab.Hosts.Select(h => (h.Name, Pid: LabRig.AgentPid(h))).Where(x => x.Pid is not null).ToDictionary(x => x.Name, x => x.Pid!.Value);
        _startTicks = _pids.ToDictionary(kv => kv.Key, kv => CpuTicks(kv.Value));
        _rssMaxKiB = _pids.ToDictionary(kv => kv.Key, kv => RssKiB(kv.Value));
        _sampler = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                foreach (var (host, pid) in _pids)
                {
                    _rssMaxKiB[host] = Math.Max(_rssMaxKiB[host], RssKiB(pid));
                }

                try
                {
                    await Task.Delay(200, _stop.Token);
                }
                catch (OperationCanceledException)
                {
                }
            }
        });
    }

    public static AgentCost Start(LabRig lab) => new(lab);

    /// <summary>Stops sampling; the figures per host name.</summary>
    public IReadOnlyDictionary<string, AgentCostFigures> Stop()
    {
        _stop.Cancel();
        _sampler.Wait();
        return _pids.ToDictionary(kv => kv.Key, kv => new AgentCostFigures(
            Math.Round((CpuTicks(kv.Value) - _startTicks[kv.Key]) / TicksPerSecond, 2),
            Math.Round(_rssMaxKiB[kv.Key] / 1024.0, 1)));
    }

    /// <summary>The report with the figures added to its details (guide mode's "agentCost").</summary>
    public static MigrationReport AddTo(MigrationReport report, IReadOnlyDictionary<string, AgentCostFigures> figures)
    {
        var details = report.Details?.ToDictionary() ?? [];
        details["agentCost"] = JsonSerializer.SerializeToElement(figures, MigrationReport.Json);
        return report with { Details = details };
    }

    /// <summary>One line for a terminal: "agents a 1.2 CPU-s 80 MiB, b ...".</summary>
    public static string Describe(IReadOnlyDictionary<string, AgentCostFigures> figures) =>
        "agents " + string.Join(", ", figures.Select(kv => $"{kv.Key} {kv.Value.CpuSeconds:0.00} CPU-s {kv.Value.RssMaxMiB:0} MiB"));

    public void Dispose()
    {
        if (!_stop.IsCancellationRequested)
        {
            _stop.Cancel();
            _sampler.Wait();
        }

        _stop.Dispose();
    }

    private static long CpuTicks(int pid)
    {
        try
        {
            // Fields after the command name (which may hold spaces) start at field 3: utime is 14, stime 15.
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return 0;
        }
    }

    private static long RssKiB(int pid)
    {
        try
        {
            foreach (string line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
                }
            }
        }
        catch (IOException)
        {
        }

        return 0;
    }
}
