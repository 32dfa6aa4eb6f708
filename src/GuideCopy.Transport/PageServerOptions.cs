using System.Net;
using GuideCopy.Interop;

namespace GuideCopy.Transport;

/// <summary>Knobs of a <see cref="PageServer"/>; defaults and units here.</summary>
public sealed class PageServerOptions
{
    /// <summary>The migration's key both agents derive (<see cref="LaneKeys.ForMigration"/> of the secret file's bytes).</summary>
    public required byte[] Secret { get; init; }
    /// <summary>Sealed (AEGIS-256, the default) or clear text (an explicit choice for closed lab links); the pager must ask for the same.</summary>
    public LaneProtection Protection { get; init; } = LaneProtection.Sealed;
    /// <summary>Where to listen; port 0 picks one (see <see cref="PageServer.LocalEndPoint"/>).</summary>
    public IPEndPoint Listen { get; init; } = new(IPAddress.Any, DefaultPort);

    /// <summary>
    /// Ports tried from <see cref="Listen"/>'s up, the first free one taken: one page server per
    /// migration a host serves at once (an evacuation runs several). 1: that port or nothing (a
    /// restarted agent must serve on the port its destination already knows).
    /// </summary>
    public int ListenPorts { get; init; } = 1;

    /// <summary>Ports an agent's page servers take from Agent:PageListen's up: migrations it can serve at once (7171-7234 by default).</summary>
    public const int AgentListenPorts = 64;

    /// <summary>The page port the agent's Agent:PageListen defaults to (docs/configuration.md) and the firewall opens.</summary>
    public const int DefaultPort = 7171;
    /// <summary>Cap on push/locality/background bytes per second; 0 = none. Never applied to demand pages.</summary>
    public long BandwidthBytesPerSecond { get; init; }
    /// <summary>
    /// Push lanes naming the same group in this process share <see cref="BandwidthBytesPerSecond"/>
    /// between them (an evacuation's budget on its source host); null: this server's own cap.
    /// </summary>
    public string? BandwidthGroup { get; init; }
    /// <summary>Whether page runs are LZ4-packed on the lanes (<see cref="PagePacker"/>); the pager reads both forms.</summary>
    public PageCompression Compression { get; init; } = PageCompression.Auto;
    /// <summary>Page size of the RAM file (4096 for tmpfs, 2 MiB for hugetlbfs).</summary>
    public int PageSize { get; init; } = 4096;
    /// <summary>A lane silent (or blocked) this long is considered dead, in ms.</summary>
    public int LinkTimeoutMs { get; init; } = 3000;
    /// <summary>Idle lanes get a heartbeat this often, in ms.</summary>
    public int HeartbeatMs { get; init; } = 500;
    /// <summary>False: serve demand only (used to measure remote fault latency).</summary>
    public bool PushEnabled { get; init; } = true;
    /// <summary>
    /// SCHED_FIFO priority of the thread answering the demand lane, 0: fair class. See
    /// <see cref="ThreadScheduling.PreferForLatency"/>.
    /// </summary>
    public int DemandRealtimePriority { get; init; }
    /// <summary>Session id in the welcome; 0 picks a random one. A restarted source serves its journaled id again.</summary>
    public ulong SessionId { get; init; }
    /// <summary>
    /// Armed before the source pauses: lanes connect and authenticate, but no page is served and
    /// the file's holes are not looked for until <see cref="PageServer.Freeze"/> (the RAM is still
    /// written until then). False: the file is frozen already (a restarted source, tools, tests).
    /// </summary>
    public bool Armed { get; init; }

    /// <summary>
    /// A server that takes over a migration whose warm-up it did not see (an agent restarted after
    /// the pause): it tells every destination that all its warm pages are stale, so none is used
    /// unchecked; they are sent again.
    /// </summary>
    public bool DiscardWarmPages { get; init; }
}
