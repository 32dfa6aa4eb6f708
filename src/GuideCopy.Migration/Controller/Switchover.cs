using GuideCopy.Migration.Agent;

namespace GuideCopy.Migration.Controller;

/// <summary>The switchover as the controller started it (<see cref="CommitPoint"/>): the destination's load asked for, then the source's suspend.</summary>
internal sealed class Switchover(Task<DestinationStartResult> loading, DateTime at)
{
    /// <summary>The destination's load (and, unless the plan holds the commit, its commit): answered once its QEMU has loaded.</summary>
    public Task<DestinationStartResult> Loading => loading;

    /// <summary>When the source was asked to suspend: time zero of the timeline and of the guest's throughput windows.</summary>
    public DateTime At => at;

    /// <summary>
    /// The source's reply (the pause's figures). Null when it was lost: the source may still have
    /// committed (its agent died right after deciding), and the migration is followed without them.
    /// </summary>
    public SwitchoverResult? Reply { get; set; }
}
