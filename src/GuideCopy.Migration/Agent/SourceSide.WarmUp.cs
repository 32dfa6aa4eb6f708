using System.Globalization;
using GuideCopy.MemoryPlane;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Journal;
using GuideCopy.Transport;

namespace GuideCopy.Migration.Agent;

// Before the pause, after the arm: the pages the running VM does not write go ahead (issue 16).
public sealed partial class SourceSide
{
    /// <summary>
    /// The warm-up: QEMU's writes tracked through the shim's uffd (<see cref="RamWriteTracker"/>),
    /// the pages it leaves alone sent as Warm pages on the destination's demand lane
    /// (<see cref="PageServer.WarmUp"/>). A QEMU that cannot be tracked (not started with the
    /// shim and GUIDECOPY_TRACK_WRITES=1) is migrated without one: Skipped says why. The tracker
    /// stays registered until the pause's last scan (<see cref="SendWarmVerdict"/>).
    /// </summary>
    public async Task<WarmUpResult> WarmUpAsync(WarmUpRequest req, CancellationToken ct)
    {
        if (_server is null || _ramPath is null || Stage != MigrationStage.Preflight || _tracker is not null)
        {
            throw new AgentException($"migration {Id} is not armed here ({Stage}), or warmed up already: arm it first");
        }

        if (!_server.DemandLaneUp)
        {
            throw new AgentException($"migration {Id}: the destination's lanes are not connected to the page server: nothing was sent");
        }

        int? pid = QemuPid(Domain);
        RamWriteTracker? tracker = null;
        string? why = pid is null ? $"no pid file for {Domain} under {Options.QemuPidDir}" : null;
        if (pid is { } p)
        {
            tracker = RamWriteTracker.TryAttach(p, _ramPath, _pageSize, out why);
        }

        if (tracker is not null && (tracker.FirstPage != 0 || tracker.PageCount != _server.PageCount))
        {
            // Pages outside the tracked mapping could never be found stale.
            why = $"QEMU {pid}'s largest mapping of {_ramPath} covers pages [{tracker.FirstPage}, +{tracker.PageCount}), not the whole RAM file of {_server.PageCount}";
            tracker.Dispose();
            tracker = null;
        }

        if (tracker is null)
        {
            Log($"{Id}: no warm-up: {why}");
            return new WarmUpResult(why, 0, 0, 0, 0, 0, 0, 0, "");
        }

        // Held first, so a rollback from here on (a failed record included) disposes it; journaled
        // before the first page goes: an agent restarted after the pause, which cannot know which
        // warm pages were written since, declares them all stale.
        _tracker = tracker;
        Record(Entry! with { WarmedUp = true });
        Log($"{Id}: warm-up: tracking QEMU {pid}'s writes to {tracker.PageCount} pages; sending what it leaves alone for at most {req.MaxSeconds:0} s");
        var limits = new WarmUpLimits { MaxDuration = TimeSpan.FromSeconds(Math.Max(0.5, req.MaxSeconds)) };
        var server = _server;
        var outcome = await Task.Run(() => server.WarmUp(tracker, limits, ct), ct);
        Log($"{Id}: warm-up: {outcome.PagesSent} pages (+{outcome.ZeroPagesSent} zero) in {outcome.DurationMs / 1000:0.0} s, " +
            $"{outcome.BytesSent / 1048576.0:0.0} MiB, {outcome.StalePages} written since, {outcome.Rounds} rounds, drained in {outcome.DrainMs:0} ms: {outcome.StopReason}");
        return new WarmUpResult(null, outcome.PagesSent, outcome.ZeroPagesSent, outcome.BytesSent, outcome.StalePages, outcome.Rounds,
            outcome.DurationMs, outcome.DrainMs, outcome.StopReason);
    }

    /// <summary>
    /// After the pause (the device state whole, so the vCPUs are stopped): the last scan and the
    /// verdict to the destination, then the tracker goes (its registration with it). Not in the
    /// pause: the destination runs meanwhile, and its faults on warm pages go to this frozen copy.
    /// Returns the stale pages, or -1 when no warm-up ran.
    /// </summary>
    private long SendWarmVerdict()
    {
        var tracker = Interlocked.Exchange(ref _tracker, null);
        if (_server is not { } server)
        {
            tracker?.Dispose();
            return -1;
        }

        try
        {
            return server.SendWarmVerdict(tracker);
        }
        finally
        {
            tracker?.Dispose();
        }
    }

    private int? QemuPid(string domain)
    {
        try
        {
            string text = File.ReadAllText(Path.Combine(Options.QemuPidDir, domain + ".pid")).Trim();
            return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && pid > 0 ? pid : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
