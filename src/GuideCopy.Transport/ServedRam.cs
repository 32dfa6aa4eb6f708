using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>
/// What the lanes of one <see cref="PageServer"/> share: the frozen RAM, which of its pages
/// went out, the push's order and its wake-up, the freeze, the destination's current demand
/// lane, and whether the server is stopping.
/// </summary>
internal sealed class ServedRam : IDisposable
{
    private FrameConnection? _demandLane;
    private volatile bool _stopped;

    public ServedRam(string frozenRamFilePath, PageServerOptions options)
    {
        Options = options;
        Ram = new FrozenRam(frozenRamFilePath, options.PageSize, scanHoles: !options.Armed);
        if (!options.Armed)
        {
            Frozen.Set();
        }
        Sent = new PageBitmap(Ram.PageCount);
        Order = new PushOrder(Ram.PageCount, localityWindow: PushOrder.LocalityWindowFor(Ram.PageSize));
        Runs = new PageRuns(Ram, new PagePacker(options.Compression, options.BandwidthBytesPerSecond));
        Pacer = LanePacer.ForGroup(options.BandwidthGroup, options.BandwidthBytesPerSecond);
    }

    public PageServerOptions Options { get; }
    public FrozenRam Ram { get; }
    /// <summary>The budget: push lanes wait on it, demand answers are charged to it without waiting (its group's, shared, under an evacuation).</summary>
    public LanePacer Pacer { get; }
    public long PageCount => Ram.PageCount;

    /// <summary>Pages sent (or announced as zero) on a lane whose bytes the destination gets; reset from its bitmap on a resume.</summary>
    public PageBitmap Sent { get; }

    public PushOrder Order { get; }
    public PageRuns Runs { get; }

    /// <summary>Wakes the push lane: a page was queued, a fault was noted, the RAM was frozen, or the server stops.</summary>
    public SemaphoreSlim PushWork { get; } = new(0, int.MaxValue);

    /// <summary>Set once the RAM is frozen (at once when not armed): no page is served before.</summary>
    public ManualResetEventSlim Frozen { get; } = new(false);

    /// <summary>
    /// The destination's latest demand lane, the one the device state and the zero map go on.
    /// Set under the device-state lock and, inside it, the zero-map lock (<see cref="DeviceStateRelay.Attach"/>).
    /// </summary>
    public FrameConnection? DemandLane { get => _demandLane; set => _demandLane = value; }

    /// <summary>True once a destination's demand lane is authenticated and not closed.</summary>
    public bool DemandLaneUp => Volatile.Read(ref _demandLane) is { IsDisposed: false };

    public bool Stopped => _stopped;

    public void Stop() => _stopped = true;

    /// <summary>Diagnostics (connections, refusals, errors). Called from server threads.</summary>
    public Action<string>? Log { get; set; }

    public void Dispose() => Ram.Dispose();
}
