using GuideCopy.Transport;
namespace GuideCopy.Migration.Guide;

/// <summary>
/// When the guide is stopped (docs/ARCHITECTURE.md step 6). Bound from the "Guide" section of the
/// configuration; sent with each migration by the controller.
/// </summary>
public sealed class GuideOptions
{
    /// <summary>Run a guide at all (migrate --guide on|off).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Hard limit on the guide's life, in seconds.</summary>
    public double TimeLimitSeconds { get; set; } = 120;

    /// <summary>The guide has nothing left to say when it touched no new page for this long, in seconds.</summary>
    public double IdleSeconds { get; set; } = 5;

    /// <summary>Window over which destination demand is judged, in seconds.</summary>
    public double MissWindowSeconds { get; set; } = 2;

    /// <summary>
    /// Stop when, within a window, at least this share of the destination's demand pages were
    /// pages the guide never touched (the guide no longer predicts the VM). 0-1.
    /// </summary>
    public double MissShare { get; set; } = 0.5;

    /// <summary>...and at least this many such pages (a few misses are noise: timers, interrupts).</summary>
    public int MinMisses { get; set; } = 64;

    /// <summary>
    /// Guide-log entries the push jumps past a page the destination faulted on ahead of the push
    /// (0: no jump): those would reach the destination only after it faulted on them too
    /// (docs/migration.md, "How far ahead the push may run"). -1: from the bandwidth cap
    /// (<see cref="LeadPagesFor"/>, the default).
    /// </summary>
    public int LeadPages { get; set; } = -1;

    /// <summary>
    /// Guide-log entries the destination, running on pages that are there, gets through per second
    /// (fitted on memtouch under TCG: docs/tuning.md, "The push's lead").
    /// </summary>
    public const double DestinationEntriesPerSecond = 20_000;

    /// <summary>A push with no cap is taken to run at this rate (of the order of the lab's veth: docs/tuning.md).</summary>
    public const double UncappedBytesPerSecond = 1e9;

    /// <summary>
    /// The lead for a push capped at <paramref name="bytesPerSecond"/> (0: none): a page the push
    /// picks now reaches the destination after the push socket's unsent bytes
    /// (<see cref="LaneSocket.PushUnsentBytes"/>) have gone out at that rate;
    /// the entries the destination gets through meanwhile would arrive after it faulted on them.
    /// </summary>
    public static int LeadFor(long bytesPerSecond)
    {
        double rate = bytesPerSecond > 0 ? bytesPerSecond : UncappedBytesPerSecond;
        return (int)Math.Round(DestinationEntriesPerSecond * LaneSocket.PushUnsentBytes / rate);
    }

    /// <summary>
    /// The lead to use for a push capped at <paramref name="bytesPerSecond"/>: <see cref="LeadPages"/>
    /// if set, else <see cref="LeadFor"/>, but none when that is shorter than a read-ahead run. The
    /// guide reads ahead per stream, so its log is the destination's order only to within a run
    /// (32 pages of one stream are logged before the next stream's, where the guest alternates);
    /// a shorter jump mostly skipped pages the destination needed a moment later (docs/tuning.md,
    /// "The push's lead").
    /// </summary>
    public int LeadPagesFor(long bytesPerSecond)
    {
        if (LeadPages >= 0) return LeadPages;
        int lead = LeadFor(bytesPerSecond);
        return lead < ReadAheadPages ? 0 : lead;
    }

    /// <summary>
    /// Stop when, over the run so far (judged from the third window on), the push had to jump
    /// over more guide-log entries than this ratio times those it sent (and at least
    /// <see cref="MinMisses"/>): the destination keeps overtaking the push, so the link, not the
    /// order, limits it and the guide only costs CPU (0: never).
    /// </summary>
    public double OutrunRatio { get; set; } = 10.0;

    /// <summary>
    /// Most pages the guide's fault service installs (and logs, in address order) for one fault
    /// once the guide's faults run sequentially; 1: one page per fault. See <see cref="GuideMemory"/>.
    /// </summary>
    public int ReadAheadPages { get; set; } = 32;
}
