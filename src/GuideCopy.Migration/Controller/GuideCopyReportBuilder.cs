using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Journal;
using GuideCopy.Migration.Report;

namespace GuideCopy.Migration.Controller;

/// <summary>Our mode's report, from what the run has seen: a refusal, a rollback, a detach, or the completed migration's figures.</summary>
internal sealed class GuideCopyReportBuilder(MigrationRun run)
{
    private MigrationPlan Plan => run.Plan;

    /// <summary>A migration that did not complete: the outcome, why, and the phases it went through.</summary>
    public MigrationReport Ended(MigrationOutcome outcome, string error) => new()
    {
        Mode = Plan.Mode,
        Id = run.Stage > MigrationStage.Preflight ? run.Id : null,
        Domain = Plan.Domain,
        Source = Plan.From.Name,
        Destination = Plan.To.Name,
        Outcome = outcome,
        Error = error,
        StartedAt = run.StartedAt,
        TotalSeconds = Math.Round(run.Clock.Elapsed.TotalSeconds, 3),
        PhasesMs = run.Clock.Phases,
    };

    /// <summary>
    /// The pause in three pieces by the clocks (docs/migration.md, "The pause by QEMU's clocks"):
    /// the source QEMU's STOP to the stream's end (QEMU's save and our relay), the stream's end
    /// to the last byte's release (the verdict and the Committed record), the release to the
    /// destination QEMU's RESUME (the last byte's trip, QEMU's last section and vm_start). QEMU's
    /// stamps and the source agent's are wall clocks: left out unless they come in order.
    /// </summary>
    private void PauseByTheClock(SwitchoverResult? switched)
    {
        if (switched is not { StreamEndedAtUnixUs: > 0, ReleasedAtUnixUs: > 0 } || run.PauseWatch?.QemuStamps() is not { } qemu)
        {
            return;
        }

        long stop = SwitchoverResult.UnixMicros(qemu.Stop), streamEnd = switched.StreamEndedAtUnixUs, released = switched.ReleasedAtUnixUs;
        long resume = SwitchoverResult.UnixMicros(qemu.Resume);
        if (stop <= streamEnd && streamEnd <= released && released <= resume)
        {
            run.Clock.Phases["pauseStopToStreamEnd"] = Math.Round((streamEnd - stop) / 1000.0, 2);
            run.Clock.Phases["pauseStreamEndToRelease"] = Math.Round((released - streamEnd) / 1000.0, 2);
            run.Clock.Phases["pauseReleaseToResume"] = Math.Round((resume - released) / 1000.0, 2);
        }
    }

    /// <summary>
    /// The completed migration. Reads the pause watch (waits briefly for the destination's RESUMED
    /// event): called before the run's libvirt connections are closed.
    /// </summary>
    public MigrationReport Completed(DestinationStatus status, SourceFinishResult? served, string? sourceNote, double totalSeconds, GuestReadout guest)
    {
        var timeline = new MigrationTimeline(guest.Work, run.PageSamples, Plan.BandwidthBytesPerSecond, status.Pages.PageSize > 0 ? status.Pages.PageSize : 4096);
        // The switchover's reply can be lost while the source still committed (its agent died
        // right after deciding): the migration is followed all the same, without its figures.
        var switched = run.Switchover!.Reply;
        if (switched is null)
        {
            sourceNote = string.Join("; ", new[] { sourceNote, "the switchover's reply was lost: the pause's figures are missing" }.Where(n => n is not null));
        }

        double? agentClocks = run.Resumed is { ResumedAtUnixMs: > 0 } r && switched is not null ? r.ResumedAtUnixMs - switched.SuspendedAtUnixMs : null;
        if (agentClocks is { } byAgents)
        {
            run.Clock.Phases["downtimeByAgentClocks"] = byAgents;
        }

        double? downtime = run.PauseWatch?.Observed() is { } seen ? Math.Round(seen.TotalMilliseconds, 2) : agentClocks;
        PauseByTheClock(switched);
        return new MigrationReport
        {
            Mode = Plan.Mode,
            Id = run.Id,
            Domain = Plan.Domain,
            Source = Plan.From.Name,
            Destination = Plan.To.Name,
            Outcome = MigrationOutcome.Completed,
            Error = sourceNote,
            StartedAt = run.StartedAt,
            TotalSeconds = totalSeconds,
            DowntimeMs = downtime,
            DowntimeByQemuClocksMs = run.PauseWatch?.ObservedByQemuClocks() is { } q ? Math.Round(q.TotalMilliseconds, 2) : null,
            BytesOnWire = (served?.Served.BytesOnWire ?? status.Pages.BytesReceived) + (switched?.DeviceStateBytes ?? 0),
            DeviceStateBytes = switched?.DeviceStateBytes,
            Lanes = run.Armed!.Source.Lanes,
            Pages = PageCounts.From(status.Pages),
            Compression = served is null ? null : CompressionReport.From(Plan.Compression, served.Served),
            DestinationFaults = FaultStats.From(status.Pages),
            Guest = guest.Throughput,
            Guide = served is null ? null : GuideSummary(served),
            WarmUp = run.WarmUp,
            Timeline = timeline,
            PhasesMs = run.Clock.Phases,
        };
    }

    private GuideReport? GuideSummary(SourceFinishResult served)
    {
        if (Plan.Guide is not { Enabled: true })
        {
            return null;
        }

        if (served.Guide is not { } g)
        {
            return new GuideReport(false, 0, 0, null, 0, 0, 0, 0, 0, run.Armed!.GuideFailure ?? "guide did not run");
        }

        long pushed = served.Served.PushPages;
        double? hit = pushed + g.DemandDuringGuide > 0 ? Math.Round((double)pushed / (pushed + g.DemandDuringGuide), 3) : null;
        return new GuideReport(g.RuntimeSeconds > 0, g.PagesLogged, pushed, hit, g.LatePushes, g.Misses, g.DemandDuringGuide,
            g.RuntimeSeconds, g.CpuSeconds, g.StopReason, g.PushSkipped, g.LateInFlight, g.LateLeadP50Ms, g.Overtaken);
    }
}
