namespace GuideCopy.Migration.Baselines;

/// <summary>
/// The migrations a user would pick instead of guide-copy: libvirt's own (virDomainMigrateToURI3,
/// peer-to-peer, live), and QEMU's post-copy driven over QMP where libvirt has no switch for it.
/// </summary>
public enum BaselineMode
{
    /// <summary>Pre-copy: RAM is sent while the guest runs, dirty pages again, until the rest fits the downtime target.</summary>
    PreCopy,

    /// <summary>Post-copy, switched once the first full RAM pass is done (memory_iteration reaches 2).</summary>
    PostCopy,

    /// <summary>Post-copy, switched as soon as the migration runs: the destination faults in nearly all of RAM.</summary>
    PostCopyAtOnce,

    /// <summary>QEMU post-copy switched at once, driven over QMP (<see cref="QemuPostCopyMigration"/>), with the destination's blocktime.</summary>
    QemuPostCopy,

    /// <summary>The same with QEMU's postcopy-preempt channel (urgent pages on their own connection); libvirt 11.3 cannot ask for it.</summary>
    QemuPostCopyPreempt,
}

public static class BaselineModeNames
{
    /// <summary>The CLI spelling: precopy, postcopy, postcopy-at-once.</summary>
    public static string ToCliName(this BaselineMode mode) => mode switch
    {
        BaselineMode.PreCopy => "precopy",
        BaselineMode.PostCopy => "postcopy",
        BaselineMode.PostCopyAtOnce => "postcopy-at-once",
        BaselineMode.QemuPostCopy => "qemu-postcopy",
        BaselineMode.QemuPostCopyPreempt => "postcopy-preempt",
        _ => throw new ArgumentOutOfRangeException(nameof(mode)),
    };

    /// <summary>
    /// Parses the CLI spelling. "postcopy-preempt" runs through QMP (<see cref="QemuPostCopyMigration"/>):
    /// libvirt 11.3's API has no flag or parameter for QEMU's postcopy-preempt capability.
    /// </summary>
    public static BaselineMode Parse(string name) => name switch
    {
        "precopy" or "pre-copy" => BaselineMode.PreCopy,
        "postcopy" or "post-copy" => BaselineMode.PostCopy,
        "postcopy-at-once" or "postcopy-immediate" => BaselineMode.PostCopyAtOnce,
        "qemu-postcopy" => BaselineMode.QemuPostCopy,
        "postcopy-preempt" or "qemu-postcopy-preempt" => BaselineMode.QemuPostCopyPreempt,
        _ => throw new ArgumentException($"unknown baseline mode '{name}': use precopy, postcopy, postcopy-at-once, qemu-postcopy or postcopy-preempt", nameof(name)),
    };

    /// <summary>Whether the mode runs through QMP rather than libvirt's migration API.</summary>
    public static bool IsQmpDriven(this BaselineMode mode) => mode is BaselineMode.QemuPostCopy or BaselineMode.QemuPostCopyPreempt;
}
