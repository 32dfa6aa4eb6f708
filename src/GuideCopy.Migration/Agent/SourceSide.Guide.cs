using GuideCopy.Migration.Control;
using GuideCopy.Migration.Definitions;
using GuideCopy.Migration.Guide;
using GuideCopy.Migration.Journal;
using GuideCopy.Transport;
using LibvirtSharp;

namespace GuideCopy.Migration.Agent;

// The guide: checked before the pause, its QEMU started then (capped link) or once the destination runs, destroyed if an earlier agent left it.
public sealed partial class SourceSide
{
    /// <summary>
    /// Before the source pauses: check that a guide can run here, and start its QEMU now only if
    /// asked (<see cref="GuidePrepareRequest.StartBeforePause"/>); else it starts once the
    /// destination runs (<see cref="StartGuide"/>). Started before the pause, on this host's CPU
    /// beside the running VM, it took 0.8-1.9 s, the longest step before the pause; started beside
    /// the pause, it held QEMU's save for up to 0.8 s (docs/migration.md, "Where the pause goes").
    /// A guide that cannot start is not fatal: the migration goes on without it.
    /// </summary>
    public async Task<Empty> PrepareGuideAsync(GuidePrepareRequest req, CancellationToken ct)
    {
        var prepared = SourcePreflight.Prepare(Options, req.Domain);
        // The guide helps only while it runs ahead of the destination, and its vCPUs (SCHED_IDLE)
        // get only what this host leaves idle. Fewer CPUs than vCPUs (the agent's cpuset, which
        // .NET's ProcessorCount follows): measured in the lab, a 2-vCPU kv guest on a 1-CPU source
        // had 10 770 demand faults with the guide against 1 978 without it (it pushed 1 017 of
        // 22 809 logged pages; 8 662 faults were pages it had not reached).
        int vcpus = DomainDefinition.Parse(prepared.MigratableXml).Vcpus, cpus = Environment.ProcessorCount;
        if (vcpus > cpus)
        {
            throw new AgentException($"source: the guide's {vcpus} vCPUs would share this host's {cpus} CPU{(cpus == 1 ? "" : "s")} and could not run ahead of the destination: migrating without a guide");
        }

        var (_, free) = HostFactsReader.FileSystemOf(Options.RamDir);
        if (free < prepared.RamBytes)
        {
            throw new AgentException($"source: RAM dir {Options.RamDir} has {free >> 20} MiB free; the guide needs {prepared.RamBytes >> 20} MiB: enlarge the tmpfs or migrate with --guide off");
        }

        CreateWorkDir();
        // Journaled before the guide's QEMU exists: a restarted agent destroys a guide it finds.
        Record(new JournalEntry { Id = Id, Role = MigrationRole.Source, Domain = req.Domain, Stage = MigrationStage.Preflight, Note = "guide prepared" });
        _guide = new GuideRun(Options, Work, Qemu, Id, Log);
        _guideXml = prepared.MigratableXml;
        if (req.StartBeforePause)
        {
            try
            {
                await _guide.BeginPrepare(_guideXml, req.Domain).WaitAsync(ct);
            }
            catch
            {
                _guide.Stop("failed to start");
                _guide = null;
                throw;
            }
        }

        return new Empty();
    }

    private string? _guideXml;

    /// <summary>Before the guide is stopped: one still starting is kept from starting; one whose start began is waited for.</summary>
    private void SettleGuideStart()
    {
        if (_guide?.RefuseStart() == false)
        {
            _guideStart?.Wait(TimeSpan.FromSeconds(30));
        }
    }

    /// <summary>
    /// The guide's QEMU loads and runs once the destination runs (its push lane comes):
    /// started now, it would take the CPU the destination's load and resume need.
    /// </summary>
    private void StartGuideOnPushLane(SwitchoverRequest req, byte[] state) => _pendingGuide = new PendingGuide(req, state);

    /// <summary>
    /// A push lane is up (the RAM frozen). The destination opens it only once its copy runs
    /// (Pager.StartPush comes after the resume): the paused source QEMU can go, and the guide start.
    /// Called on the lane's thread, on each lane after a reconnect too: returns at once.
    /// </summary>
    private void OnPushLaneUp()
    {
        DestinationRuns();
        if (Interlocked.Exchange(ref _pendingGuide, null) is { } g)
        {
            StartGuide(g.Request, g.State);
        }
    }

    /// <summary>
    /// The guide's QEMU starts, then resumes beside the destination on the frozen RAM, while the
    /// pages move: its start never adds downtime, and the source's paused VM leaves it the CPU.
    /// </summary>
    private void StartGuide(SwitchoverRequest req, byte[] state)
    {
        if (_guide is not null && _guideXml is not null && req.Guide is { Enabled: true } control)
        {
            var guide = _guide;
            var server = _server!;
            string frozen = Entry!.FrozenRam!;
            guide.BeginPrepare(_guideXml, Domain);
            _guideStart = Task.Run(async () =>
            {
                try
                {
                    await guide.Prepared;
                }
                catch (Exception e)
                {
                    guide.Stop($"failed to start: {e.Message}");
                    return;
                }

                try
                {
                    await guide.StartAsync(frozen, server, state, control, CancellationToken.None);
                }
                catch (Exception e)
                {
                    guide.Stop($"failed to start: {e.Message}");
                }
            }, CancellationToken.None);
        }
        else
        {
            _guide?.Stop("disabled");
        }
    }

    /// <summary>The guide of a migration an earlier agent ran is of no use to this one.</summary>
    private void DestroyGuide()
    {
        try
        {
            _conn ??= Connection.Open(Options.LibvirtUri);
            using var guide = _conn.TryLookupDomain(GuideRun.GuideName(Domain));
            if (guide is { IsActive: true } && !guide.IsPersistent)
            {
                guide.Destroy();
                Log($"{Id}: destroyed the guide an earlier agent left running");
            }
        }
        catch (LibvirtException e)
        {
            Lines.Warning($"{Id}: could not check for a leftover guide: {e.LibvirtMessage}");
        }
    }
}
