namespace GuideCopy.Migration.Guide;

/// <summary>
/// When the guide is stopped (ARCHITECTURE.md step 6). Bound from the "Guide" section of the
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
    /// Guide-log entries the push jumps past a page the destination faulted on (0: no jump): those
    /// would reach the destination only after it faulted on them too (docs/migration.md,
    /// "How far ahead the push may run").
    /// </summary>
    public int LeadPages { get; set; } = 256;

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
