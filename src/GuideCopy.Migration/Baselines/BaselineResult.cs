namespace GuideCopy.Migration.Baselines;

/// <summary>
/// What one baseline migration cost, from libvirt's completed-job statistics
/// (virDomainGetJobStats with VIR_DOMAIN_JOB_STATS_COMPLETED) plus a wall clock around the call.
/// </summary>
/// <param name="TotalTime">Wall-clock time of virDomainMigrateToURI3, as the controller saw it.</param>
/// <param name="LibvirtElapsed">libvirt's time_elapsed for the job (null if it did not report one).</param>
/// <param name="Downtime">
/// libvirt's downtime (source paused to destination running). For post-copy QEMU's figure has been
/// seen to be unreliable on this rig (docs/FACTS.md); compare it with the guest's own heartbeats.
/// </param>
/// <param name="ObservedPause">
/// Source SUSPENDED event to destination RESUMED event, as the controller received them: the
/// pause the guest sees, measured the same way for every mode (null if an event was missed).
/// </param>
/// <param name="DataBytes">Bytes moved by the migration stream (data_processed).</param>
/// <param name="MemoryBytes">Guest RAM bytes moved (memory_processed).</param>
/// <param name="MemoryTotalBytes">Guest RAM size the job covered (memory_total).</param>
/// <param name="Iterations">Dirty-sync passes (memory_iteration); 1-2 for post-copy at once.</param>
/// <param name="PostCopyRequests">Pages the destination requested after the switch (memory_postcopy_requests).</param>
/// <param name="SwitchedToPostCopyAfter">When virDomainMigrateStartPostCopy succeeded, from the start; null for pre-copy.</param>
/// <param name="EnteredPostCopy">
/// Whether the source was seen paused for post-copy (VIR_DOMAIN_PAUSED_POSTCOPY). A post-copy run
/// whose remaining dirty RAM already fits the downtime target when the switch is asked for ends as
/// a plain pre-copy, and this stays false.
/// </param>
/// <param name="Stats">Every field libvirt reported, by its VIR_DOMAIN_JOB_* name.</param>
public sealed record BaselineResult(
    BaselineMode Mode,
    string Domain,
    TimeSpan TotalTime,
    TimeSpan? LibvirtElapsed,
    TimeSpan? Downtime,
    TimeSpan? ObservedPause,
    ulong? DataBytes,
    ulong? MemoryBytes,
    ulong? MemoryTotalBytes,
    ulong? Iterations,
    ulong? PostCopyRequests,
    TimeSpan? SwitchedToPostCopyAfter,
    bool EnteredPostCopy,
    IReadOnlyDictionary<string, object> Stats)
{
    /// <summary>
    /// Time the destination's vCPUs were blocked on missing pages (QEMU's postcopy-blocktime, only
    /// for <see cref="QemuPostCopyMigration"/>: libvirt cannot turn that capability on).
    /// </summary>
    public TimeSpan? BlockTime { get; init; }

    /// <summary><see cref="ObservedPause"/> by QEMU's own STOP and RESUME stamps (<see cref="GuestPauseWatch.ObservedByQemuClocks"/>).</summary>
    public TimeSpan? PauseByQemuClocks { get; init; }

    public override string ToString() =>
        $"{Mode.ToCliName()} {Domain}: total {TotalTime.TotalSeconds:F2} s, downtime {Ms(Downtime)} (events: {Ms(ObservedPause)}), " +
        $"{(DataBytes ?? 0) / (1024.0 * 1024):F1} MiB on the wire, {Iterations?.ToString() ?? "?"} passes" +
        (Mode == BaselineMode.PreCopy ? "" : $", switched after {Ms(SwitchedToPostCopyAfter)}, {PostCopyRequests?.ToString() ?? "?"} page requests, {(EnteredPostCopy ? "ran post-copy" : "ended in pre-copy")}");

    private static string Ms(TimeSpan? t) => t is null ? "?" : $"{t.Value.TotalMilliseconds:F0} ms";
}
