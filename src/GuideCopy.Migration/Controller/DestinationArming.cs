using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// While the source still runs: the destination QEMU started paused with the shim, beside it
/// the guide checked (its QEMU started too on a capped link, else once the destination runs) and
/// the source armed (page server listening, handles open); then the destination armed against it
/// (QEMU in migrate-incoming, the pager's lanes authenticated).
/// </summary>
internal sealed class DestinationArming(MigrationRun run)
{
    private MigrationPlan Plan => run.Plan;

    public async Task PrepareAsync(CancellationToken ct)
    {
        run.Clock.Report("destination start");
        // From the first request that creates anything, the agents hold a lease on our life.
        run.Agents.HoldLease(run.Id);
        run.DestinationPrepared();
        var prepared = run.Prepared!;
        var src = run.Agents.Source!;
        var dst = run.Agents.Destination!;
        var startDestination = dst.PrepareDestinationAsync(
            new DestinationPrepareRequest(run.Id, prepared.MigratableXml, prepared.Name, prepared.Persistent ? prepared.PersistentXml : null), ct);
        bool guideStarted = false;
        string? guideFailure = null;
        SourceArmResult sourceArmed;
        try
        {
            if (Plan.Guide is { Enabled: true })
            {
                // A guide that fails to start is not fatal: the migration goes on as --guide off.
                try
                {
                    await src.PrepareGuideAsync(new GuidePrepareRequest(run.Id, Plan.Domain, StartBeforePause: Plan.BandwidthBytesPerSecond > 0), ct);
                    guideStarted = true;
                }
                catch (AgentException e) when (!e.ConnectionLost)
                {
                    guideFailure = $"guide did not start: {e.Message}";
                }
            }

            sourceArmed = await src.ArmSourceAsync(new SourceArmRequest(run.Id, Plan.Domain, Plan.BandwidthBytesPerSecond, Plan.Push, Plan.ClearTextLanes, Plan.KeepSourceDefinition, Plan.Compression, Plan.BandwidthGroup), ct);
            run.Clock.Phases["sourceArm"] = sourceArmed.ArmMs;
        }
        finally
        {
            // Never leave the destination's start unobserved (a failure above rolls back; it must have ended).
            await Task.WhenAny(startDestination);
        }

        var started = await startDestination;
        run.Clock.Phases["destinationStart"] = Math.Round(started.StartMs, 1);
        var armed = await dst.ArmDestinationAsync(
            new DestinationArmRequest(run.Id, Plan.PageServerRoute?.Invoke(sourceArmed.PageServer) ?? sourceArmed.PageServer, sourceArmed.SessionId, Plan.ClearTextLanes,
                StartOnLoad: Plan.BeforeCommit is null), ct);
        run.Clock.Phases["destinationArm"] = armed.ArmMs;
        run.Clock.Phase("destinationPrepare");
        run.BothArmed(new ArmedSides(sourceArmed, guideStarted, guideFailure));
        if (Plan.WarmUp is { } warmUp)
        {
            await WarmUpAsync(src, armed, warmUp, ct);
        }
    }

    /// <summary>
    /// While the source still runs, after both arms: the pages it does not write go ahead
    /// (docs/migration.md, "The warm-up"). An older destination agent cannot hold them: none.
    /// </summary>
    private async Task WarmUpAsync(ISourceAgent src, DestinationArmResult armed, TimeSpan limit, CancellationToken ct)
    {
        if (!armed.HoldsWarmPages)
        {
            run.WarmUp = new WarmUpResult("the destination agent cannot hold warm pages (update it)", 0, 0, 0, 0, 0, 0, 0, "");
            return;
        }

        run.Clock.Report("warm-up");
        WarmUpResult warm;
        try
        {
            warm = run.WarmUp = await src.WarmUpAsync(new WarmUpRequest(run.Id, limit.TotalSeconds), ct);
        }
        catch (AgentException e) when (!e.ConnectionLost && e.Message.Contains("unknown", StringComparison.OrdinalIgnoreCase))
        {
            // An older source agent: no warm-up, the migration goes on.
            run.WarmUp = new WarmUpResult($"the source agent cannot warm up (update it): {e.Message}", 0, 0, 0, 0, 0, 0, 0, "");
            return;
        }

        run.Clock.Phase("warmUp");
        // The source saw its bytes acknowledged, not read: up to a socket buffer (8 MiB) of warm
        // pages may still wait in the destination's kernel, and the device state would queue
        // behind them in the pause. Wait until the destination holds every page sent (measured
        // 0.9-66 ms, the `warmUpHeld` phase).
        long sent = warm.PagesSent + warm.ZeroPagesSent;
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (sent > 0 && DateTime.UtcNow < deadline)
        {
            var status = await run.Agents.Destination!.StatusAsync(new MigrationRequest(run.Id), ct);
            if (status.Pages.WarmHeldPages >= sent)
            {
                break;
            }

            await Task.Delay(20, ct);
        }

        run.Clock.Phase("warmUpHeld");
    }
}
