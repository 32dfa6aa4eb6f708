using System.Text.RegularExpressions;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Definitions;
using GuideCopy.Migration.Journal;
using GuideCopy.Migration.Report;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// The controller's side of our mode (docs/migration.md, "Stages and the journal"): preflight
/// on both hosts, destination start (<see cref="DestinationArming"/>), switchover (suspend +
/// device state), load, the commit point (<see cref="CommitPoint"/>), then following the transfer
/// the agents finish by themselves (<see cref="CompletionWait"/>). The stage it has seen is one
/// <see cref="MigrationStage"/> (<see cref="MigrationRun"/>); the commit point is never inferred
/// from a reply: a lost or failed resume is answered by asking the destination, and a rollback
/// (<see cref="Rollback"/>) starts by asking the source to take the decision "rolled back",
/// which it refuses once committed.
/// </summary>
public sealed partial class GuideCopyMigration
{
    private readonly MigrationPlan _plan;
    private readonly MigrationRun _run;
    private readonly GuideCopyReportBuilder _reports;

    public GuideCopyMigration(MigrationPlan plan, Action<MigrationProgress>? progress = null)
    {
        _plan = plan;
        _run = new MigrationRun(plan, NewId(plan.Domain),
            plan.Agents ?? new ControlChannelConnector(plan.From.Agent, plan.To.Agent, plan.Secret), progress);
        _reports = new GuideCopyReportBuilder(_run);
    }

    /// <summary>The migration id the agents journal it under (its prefix is the domain name, made file-name safe).</summary>
    public string Id => _run.Id;

    /// <summary>The stage this controller has seen.</summary>
    public MigrationStage Stage => _run.Stage;

    /// <summary>How long the controller follows a transfer in which no page moves before it detaches (the agents go on).</summary>
    public static readonly TimeSpan NoProgressLimit = TimeSpan.FromMinutes(5);

    /// <summary>How long a rollback waits for a lost source agent to come back (a restarted one rolls back by itself).</summary>
    public static readonly TimeSpan SourceRecovery = TimeSpan.FromSeconds(60);

    /// <summary>How long a controller that lost the resume's reply asks the destination before it lets the source arbitrate.</summary>
    public static readonly TimeSpan DefaultCommitAsk = TimeSpan.FromSeconds(30);

    /// <summary>How long the controller waits for a lost destination agent after the commit point.</summary>
    public static readonly TimeSpan AgentRecovery = TimeSpan.FromMinutes(5);

    public static string NewId(string domain)
    {
        string safe = UnsafeIdCharacters().Replace(domain, "_").TrimStart('.');
        return $"{(safe.Length > 48 ? safe[..48] : safe)}-{Guid.NewGuid().ToString("N")[..8]}";
    }

    [GeneratedRegex("[^A-Za-z0-9._-]")]
    private static partial Regex UnsafeIdCharacters();

    /// <summary>
    /// Runs the migration. <paramref name="ct"/> is the operator's interrupt (Ctrl-C, SIGTERM):
    /// before the commit point it rolls back in full (the rollback itself is never cancelled);
    /// after it the controller detaches and the agents finish.
    /// </summary>
    public async Task<MigrationReport> RunAsync(CancellationToken ct)
    {
        _run.Start();
        var caller = ct;
        // --timeout bounds the steps before the commit point only: after it the VM is the
        // destination's and giving up would not give it back.
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        if (_plan.Timeout is { } limit)
        {
            deadline.CancelAfter(limit);
            ct = deadline.Token;
        }

        try
        {
            if (await PreflightAsync(ct) is { Count: > 0 } problems)
            {
                return _reports.Ended(MigrationOutcome.Refused, string.Join("\n", problems)) with { Problems = problems };
            }

            await ToTheCommitPointAsync(ct, caller);
        }
        catch (Exception e) when (!_run.Stage.IsCommitted())
        {
            if (e is OperationCanceledException && deadline.IsCancellationRequested && !caller.IsCancellationRequested)
            {
                e = new TimeoutException($"the commit point was not reached within --timeout {_plan.Timeout!.Value.TotalSeconds:0.###} s");
            }

            var rolledBack = await new Rollback(_run, _reports).RunAsync(e);
            if (rolledBack is not null)
            {
                return rolledBack;
            }

            // The source refused the rollback: it had already committed. Follow it.
        }
        finally
        {
            if (_run.Stage.IsCommitted())
            {
                await _run.Agents.ReleaseLeaseAsync();
            }
        }

        return await new CompletionWait(_run, _reports).FollowAsync(caller);
    }

    /// <summary>
    /// The preflight alone (`guidecopy check`): both agents, the domain and the hosts checked,
    /// nothing paused, started or journaled. Empty when nothing stands in the way.
    /// </summary>
    public async Task<IReadOnlyList<string>> CheckAsync(CancellationToken ct)
    {
        try
        {
            return await PreflightAsync(ct);
        }
        finally
        {
            await _run.DisposeAllAsync();
        }
    }

    /// <summary>Both agents, the domain and the hosts checked; each problem names its fix.</summary>
    private async Task<List<string>> PreflightAsync(CancellationToken ct)
    {
        _run.Clock.Report("preflight");
        var src = await _run.Agents.SourceAsync(ct);
        var dst = await _run.Agents.DestinationAsync(ct);
        var prepared = await src.PrepareSourceAsync(new DomainRequest(_plan.Domain), ct);
        _run.Preflighted(prepared);
        var srcFacts = await src.FactsAsync(ct);
        var dstFacts = await dst.FactsAsync(ct);
        var def = DomainDefinition.Parse(prepared.MigratableXml);
        var check = await dst.CheckDestinationAsync(
            new DestinationCheckRequest(def.Name, def.Disks.Select(d => d.Source).OfType<string>().ToList(), prepared.RamBytes), ct);
        var problems = prepared.Problems.Concat(Preflight.Compare(srcFacts, dstFacts, prepared)).Concat(check.Problems).ToList();
        _run.Clock.Phase("preflight");
        return problems;
    }

    /// <summary>Everything up to and including the commit point, in the agents' order; <paramref name="caller"/> alone may interrupt the commit.</summary>
    private async Task ToTheCommitPointAsync(CancellationToken ct, CancellationToken caller)
    {
        // Watching the guest is the lab's measurement, not migration work: off the clock.
        _run.Clock.Stop();
        await StartGuestWatchAsync(ct);
        _run.Clock.Start();
        _run.WatchThePause();
        await new DestinationArming(_run).PrepareAsync(ct);
        if (_plan.BeforeSwitchover is { } beforeSwitchover)
        {
            await beforeSwitchover();
        }

        var commitPoint = new CommitPoint(_run);
        await commitPoint.SwitchoverAsync(ct);
        await commitPoint.LoadAsync();
        await commitPoint.CommitAsync(caller);
    }

    /// <summary>The guest's own progress, when the plan can watch it (lab guests' consoles), for throughput.</summary>
    private async Task StartGuestWatchAsync(CancellationToken ct)
    {
        if (_plan.GuestWatch is { } watch)
        {
            _run.Guest = await watch.StartAsync(DomainDefinition.Parse(_run.Prepared!.MigratableXml), ct);
        }
    }
}
