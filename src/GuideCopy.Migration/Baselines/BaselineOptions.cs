namespace GuideCopy.Migration.Baselines;

/// <summary>How to run one baseline migration.</summary>
/// <param name="Mode">Which libvirt migration.</param>
/// <param name="BandwidthMiBps">
/// Cap on the migration stream in MiB/s (libvirt's unit), for the pre-copy and the post-copy
/// phase alike (VIR_MIGRATE_PARAM_BANDWIDTH and _BANDWIDTH_POSTCOPY); null leaves libvirt's default.
/// </param>
/// <param name="MigrationUri">
/// Where the source QEMU sends RAM (VIR_MIGRATE_PARAM_URI, e.g. "tcp://10.77.3.2"). Needed when the
/// destination's hostname does not resolve to its address on the migration link, as in the lab.
/// </param>
/// <param name="MaxDowntime">Pre-copy's switchover target (virDomainMigrateSetMaxDowntime); null keeps libvirt's 300 ms.</param>
/// <param name="Timeout">A pre-copy that has not finished by then is aborted; post-copy cannot be aborted after the switch.</param>
/// <param name="PollInterval">How often job stats are read while the migration runs.</param>
/// <param name="DestinationXml">The XML the destination starts from (VIR_MIGRATE_PARAM_DEST_XML); null: the source's live XML.</param>
/// <param name="KeepSourceDefinition">A persistent domain's definition stays on the source, shut off (no VIR_MIGRATE_UNDEFINE_SOURCE).</param>
public sealed record BaselineOptions(
    BaselineMode Mode,
    ulong? BandwidthMiBps = null,
    string? MigrationUri = null,
    TimeSpan? MaxDowntime = null,
    TimeSpan? Timeout = null,
    TimeSpan? PollInterval = null,
    string? DestinationXml = null,
    bool KeepSourceDefinition = false)
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(10);

    public static readonly TimeSpan DefaultPollInterval = TimeSpan.FromMilliseconds(50);

    /// <summary>A link rate in Mbit/s as libvirt's MiB/s, rounded up so the cap is never tighter than asked (100 -> 12).</summary>
    public static ulong MiBpsFromMbitps(double megabitsPerSecond) =>
        (ulong)Math.Ceiling(megabitsPerSecond * 1_000_000 / 8 / (1024 * 1024));
}
