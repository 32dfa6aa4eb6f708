using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Journal;
using GuideCopy.Migration.Report;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// What one run of the controller has seen, step by step. <see cref="Stage"/> is the one answer to
/// "is this VM committed?" (<see cref="MigrationStages.IsCommitted"/>); it moves only forward, through
/// the methods named after the steps, and each step's result is set with the stage it reaches.
/// </summary>
internal sealed class MigrationRun(MigrationPlan plan, string id, IAgentConnector agents, Action<MigrationProgress>? progress)
{
    public MigrationPlan Plan => plan;

    /// <summary>The migration id the agents journal it under.</summary>
    public string Id => id;

    public AgentLinks Agents { get; } = new(agents);

    public PhaseClock Clock { get; } = new(progress);

    public DateTimeOffset StartedAt { get; private set; }

    /// <summary>The stage this controller has seen.</summary>
    public MigrationStage Stage { get; private set; } = MigrationStage.Preflight;

    /// <summary>The source's answer to the preflight: the domain's definitions, size and identity.</summary>
    public SourcePrepareResult? Prepared { get; private set; }

    /// <summary>Set once both sides are armed, in <see cref="MigrationStage.DestinationPrepared"/>.</summary>
    public ArmedSides? Armed { get; private set; }

    /// <summary>What the warm-up did (null: none was asked for, or the destination cannot hold warm pages).</summary>
    public WarmUpResult? WarmUp { get; set; }

    /// <summary>Set with <see cref="MigrationStage.SourcePaused"/>: from then on the source may pause.</summary>
    public Switchover? Switchover { get; private set; }

    /// <summary>How the destination resumed: set once committed (zero when the destination could not say).</summary>
    public ResumeResult? Resumed { get; private set; }

    /// <summary>The guest's own progress, when the plan can watch it (lab guests' consoles).</summary>
    public IWatchedGuest? Guest { get; set; }

    /// <summary>The pause seen through both libvirtds, where this controller reaches them.</summary>
    public LibvirtPauseWatch? PauseWatch { get; private set; }

    /// <summary>The destination's figures at each poll after the switchover (a few per second), for the pictures.</summary>
    public List<PagesSample> PageSamples { get; } = [];

    public void Start()
    {
        StartedAt = DateTimeOffset.UtcNow;
        Clock.Start();
    }

    public void Preflighted(SourcePrepareResult prepared) => Prepared = prepared;

    /// <summary>The first request that creates anything is on its way: from now on a failure rolls back.</summary>
    public void DestinationPrepared() => Stage = MigrationStage.DestinationPrepared;

    public void BothArmed(ArmedSides armed) => Armed = armed;

    /// <summary>The destination's load is asked for; the source is asked to suspend next.</summary>
    public void SourcePaused(Switchover switchover)
    {
        Switchover = switchover;
        Stage = MigrationStage.SourcePaused;
    }

    /// <summary>The source saved and sent its device state; with the commit not held, the destination now takes it.</summary>
    public void Switched(SwitchoverResult reply, bool commitWhenLoaded)
    {
        Switchover!.Reply = reply;
        Stage = commitWhenLoaded ? MigrationStage.Committing : MigrationStage.DeviceStateSaved;
    }

    public void DestinationLoaded() => Stage = MigrationStage.DestinationLoaded;

    public void Committing() => Stage = MigrationStage.Committing;

    /// <summary>The commit point, and how the destination resumed.</summary>
    public void Committed(ResumeResult resumed)
    {
        Resumed = resumed;
        Stage = MigrationStage.Committed;
    }

    /// <summary>The source refused the rollback: it had committed. The resume is asked of the destination next (<see cref="Committed"/>).</summary>
    public void CommittedAtTheSource() => Stage = MigrationStage.Committed;

    public void WatchThePause() => PauseWatch = LibvirtPauseWatch.Start(plan);

    public void StopWatchingTheGuest()
    {
        Guest?.Dispose();
        Guest = null;
    }

    /// <summary>The pause watch's libvirt connections, the lease and both agents' connections.</summary>
    public async Task DisposeAllAsync()
    {
        PauseWatch?.Dispose();
        PauseWatch = null;
        await Agents.CloseAllAsync();
    }
}
