using GuideCopy.Interop;

namespace GuideCopy.Transport;

/// <summary>Knobs of a <see cref="Pager"/>; defaults and units here.</summary>
public sealed class PagerOptions
{
    /// <summary>A lane that hears nothing (not even a heartbeat) this long is reconnected, in ms.</summary>
    public int LinkTimeoutMs { get; init; } = 3000;
    /// <summary>Idle demand lane heartbeat period, in ms.</summary>
    public int HeartbeatMs { get; init; } = 500;
    /// <summary>Pause between reconnect attempts, in ms.</summary>
    public int ReconnectDelayMs { get; init; } = 200;
    /// <summary>
    /// Trust pages already present in the destination RAM file as installed. Always done when the
    /// shim hands the uffd again (agent restart); the file must have started empty.
    /// </summary>
    public bool TrustRamFile { get; init; }
    /// <summary>
    /// SCHED_FIFO priority of the threads a fault waits on (uffd reader, demand lane), 0: fair class
    /// like the rest. See <see cref="ThreadScheduling.PreferForLatency"/>.
    /// </summary>
    public int DemandRealtimePriority { get; init; }
    /// <summary>SCHED_FIFO priority of the push lane's receiver, 0: fair class.</summary>
    public int PushRealtimePriority { get; init; }
    /// <summary>Sealed (AEGIS-256, the default) or clear text; must match the page server's.</summary>
    public LaneProtection Protection { get; init; } = LaneProtection.Sealed;
    /// <summary>
    /// The push lane waits for <see cref="Pager.StartPush"/>: armed before the pause, the bulk
    /// stream would otherwise start in the middle of it and take the CPU the load, the commit and
    /// the resume need (docs/tuning.md, "The push lane waits for the resume").
    /// </summary>
    public bool DeferPush { get; init; }
}
