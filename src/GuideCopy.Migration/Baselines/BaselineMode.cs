namespace GuideCopy.Migration.Baselines;

/// <summary>
/// The migrations a user would pick instead of guide-copy, all done by libvirt itself
/// (virDomainMigrateToURI3, peer-to-peer, live).
/// </summary>
public enum BaselineMode
{
    /// <summary>Pre-copy: RAM is sent while the guest runs, dirty pages again, until the rest fits the downtime target.</summary>
    PreCopy,

    /// <summary>Post-copy, switched once the first full RAM pass is done (memory_iteration reaches 2).</summary>
    PostCopy,

    /// <summary>Post-copy, switched as soon as the migration runs: the destination faults in nearly all of RAM.</summary>
    PostCopyAtOnce,
}

public static class BaselineModeNames
{
    /// <summary>The CLI spelling: precopy, postcopy, postcopy-at-once.</summary>
    public static string ToCliName(this BaselineMode mode) => mode switch
    {
        BaselineMode.PreCopy => "precopy",
        BaselineMode.PostCopy => "postcopy",
        BaselineMode.PostCopyAtOnce => "postcopy-at-once",
        _ => throw new ArgumentOutOfRangeException(nameof(mode)),
    };

    /// <summary>
    /// Parses the CLI spelling. "postcopy-preempt" is refused with the reason: libvirt 11.3's API
    /// has no way to ask for QEMU's postcopy-preempt capability (no VIR_MIGRATE_* flag or
    /// VIR_MIGRATE_PARAM_* for it in libvirt-api.xml), and setting it behind libvirt's back over
    /// QMP would race libvirt's own capability setup for the migration.
    /// </summary>
    public static BaselineMode Parse(string name) => name switch
    {
        "precopy" or "pre-copy" => BaselineMode.PreCopy,
        "postcopy" or "post-copy" => BaselineMode.PostCopy,
        "postcopy-at-once" or "postcopy-immediate" => BaselineMode.PostCopyAtOnce,
        "postcopy-preempt" => throw new NotSupportedException(
            "postcopy-preempt is not available through libvirt 11.3 (its API has no flag or parameter for QEMU's postcopy-preempt capability); use postcopy or postcopy-at-once"),
        _ => throw new ArgumentException($"unknown baseline mode '{name}': use precopy, postcopy or postcopy-at-once", nameof(name)),
    };
}
