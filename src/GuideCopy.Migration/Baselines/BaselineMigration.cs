using System.Diagnostics;
using LibvirtSharp;
using LibvirtSharp.Native;

namespace GuideCopy.Migration.Baselines;

/// <summary>
/// Runs one libvirt-native migration (pre-copy or post-copy) of a running domain and reports
/// its cost from libvirt's job statistics. Peer-to-peer: the source libvirtd drives the
/// destination itself, so the controller only needs both connections for switching and stats.
/// </summary>
public static class BaselineMigration
{
    /// <param name="source">Connection to the source libvirtd.</param>
    /// <param name="destination">Connection to the destination libvirtd (for its completed-job stats).</param>
    /// <param name="domainName">The running domain to move; it keeps its name.</param>
    /// <param name="destinationPeerUri">The destination libvirtd as the source daemon reaches it (lab: <c>qemu+tcp://addr/system</c>).</param>
    public static BaselineResult Run(Connection source, Connection destination, string domainName, string destinationPeerUri,
        BaselineOptions options, CancellationToken cancellation = default)
    {
        using var domain = source.LookupDomain(domainName);
        if (!domain.IsActive)
            throw new InvalidOperationException($"domain '{domainName}' is not running; a live migration needs a running guest");
        CheckPreCopyIsSafe(source, domain, options.Mode);

        var flags = MigrateFlags(domain, options);
        bool postCopy = options.Mode != BaselineMode.PreCopy;

        using var parameters = new TypedParams();
        AddMigrateParameters(parameters, options, postCopy);
        if (options.MaxDowntime is { } downtime) domain.MigrateSetMaxDowntime((ulong)downtime.TotalMilliseconds);

        using var pause = new GuestPauseWatch(source, domain, destination, domainName);

        var timeout = options.Timeout ?? BaselineOptions.DefaultTimeout;
        var poll = options.PollInterval ?? BaselineOptions.DefaultPollInterval;
        var clock = Stopwatch.StartNew();
        // virDomainMigrateToURI3 blocks until the end; libvirt connections are thread-safe, so this
        // thread keeps reading job stats and issues the post-copy switch on the same connection.
        var migration = Task.Factory.StartNew(() => domain.MigrateToUri3(destinationPeerUri, parameters, flags),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        var job = WatchJob(migration, domain, options.Mode, postCopy, clock, timeout, poll, cancellation);
        clock.Stop();
        ThrowIfFailed(migration, job.Aborted, options.Mode, domainName, timeout);

        TimeSpan? observedPause = pause.Observed();

        var stats = CompletedStats(destination, domainName) ?? job.LastSample;
        return Result(options.Mode, domainName, clock.Elapsed, observedPause, stats, job.SwitchedAt, job.EnteredPostCopy) with
        {
            PauseByQemuClocks = pause.ObservedByQemuClocks(),
        };
    }

    private static virDomainMigrateFlags MigrateFlags(LibvirtSharp.Domain domain, BaselineOptions options)
    {
        var flags = virDomainMigrateFlags.VIR_MIGRATE_LIVE | virDomainMigrateFlags.VIR_MIGRATE_PEER2PEER
            | virDomainMigrateFlags.VIR_MIGRATE_ABORT_ON_ERROR;
        // A persistent domain moves with its definition; a transient one stays transient.
        if (domain.IsPersistent)
            flags |= virDomainMigrateFlags.VIR_MIGRATE_PERSIST_DEST
                | (options.KeepSourceDefinition ? 0 : virDomainMigrateFlags.VIR_MIGRATE_UNDEFINE_SOURCE);
        bool postCopy = options.Mode != BaselineMode.PreCopy;
        if (postCopy) flags |= virDomainMigrateFlags.VIR_MIGRATE_POSTCOPY;
        return flags;
    }

    private static void AddMigrateParameters(TypedParams parameters, BaselineOptions options, bool postCopy)
    {
        if (options.MigrationUri is not null) parameters.Add(TypedParamFields.VIR_MIGRATE_PARAM_URI, options.MigrationUri);
        if (options.DestinationXml is not null) parameters.Add(TypedParamFields.VIR_MIGRATE_PARAM_DEST_XML, options.DestinationXml);
        if (options.BandwidthMiBps is { } cap)
        {
            parameters.Add(TypedParamFields.VIR_MIGRATE_PARAM_BANDWIDTH, cap);
            // Without this the post-copy phase runs uncapped (QEMU's max-postcopy-bandwidth 0).
            if (postCopy) parameters.Add(TypedParamFields.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY, cap);
        }
    }

    /// <summary>
    /// While virDomainMigrateToURI3 runs: samples the source's job stats, issues the post-copy
    /// switch when the mode's moment comes, and aborts a run that has not switched in time.
    /// </summary>
    private static (JobStats? LastSample, TimeSpan? SwitchedAt, bool Aborted, bool EnteredPostCopy) WatchJob(Task migration, LibvirtSharp.Domain domain,
        BaselineMode mode, bool postCopy, Stopwatch clock, TimeSpan timeout, TimeSpan poll, CancellationToken cancellation)
    {
        JobStats? lastSample = null;
        TimeSpan? switchedAt = null;
        bool aborted = false, enteredPostCopy = false;
        while (!Finished(migration, switchedAt is null && mode == BaselineMode.PostCopyAtOnce ? TimeSpan.FromMilliseconds(5) : poll))
        {
            JobStats? sample = TrySample(domain);
            if (sample is { Type: not virDomainJobType.VIR_DOMAIN_JOB_NONE }) lastSample = sample;
            if (postCopy && switchedAt is null && sample is { Type: virDomainJobType.VIR_DOMAIN_JOB_UNBOUNDED } && ShouldSwitch(mode, sample))
            {
                if (TryStartPostCopy(domain)) switchedAt = clock.Elapsed;
            }
            if (switchedAt is not null && !enteredPostCopy) enteredPostCopy = IsPausedForPostCopy(domain);
            if (!aborted && switchedAt is null && (clock.Elapsed > timeout || cancellation.IsCancellationRequested))
            {
                // Before the switch the source still has the whole guest: aborting is a clean rollback.
                try { domain.AbortJob(); } catch (LibvirtException) { }
                aborted = true;
            }
        }
        return (lastSample, switchedAt, aborted, enteredPostCopy);
    }

    private static void ThrowIfFailed(Task migration, bool aborted, BaselineMode mode, string domainName, TimeSpan timeout)
    {
        if (migration.IsFaulted)
        {
            var error = migration.Exception!.InnerException!;
            if (aborted) throw new TimeoutException($"{mode.ToCliName()} of '{domainName}' did not finish within {timeout} and was aborted", error);
            throw error is LibvirtException le ? le : new InvalidOperationException($"migration of '{domainName}' failed", error);
        }
    }

    private static BaselineResult Result(BaselineMode mode, string domainName, TimeSpan totalTime, TimeSpan? observedPause,
        JobStats? stats, TimeSpan? switchedAt, bool enteredPostCopy)
    {
        // The destination's completed stats count post-copy page requests; a run that got any did switch.
        enteredPostCopy |= stats?.GetULong(TypedParamFields.VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS) > 0;
        var fields = stats?.Fields ?? new Dictionary<string, object>();
        return new BaselineResult(
            mode,
            domainName,
            totalTime,
            Ms(stats?.GetULong(TypedParamFields.VIR_DOMAIN_JOB_TIME_ELAPSED)),
            Ms(stats?.GetULong(TypedParamFields.VIR_DOMAIN_JOB_DOWNTIME)),
            observedPause,
            stats?.GetULong(TypedParamFields.VIR_DOMAIN_JOB_DATA_PROCESSED),
            stats?.GetULong(TypedParamFields.VIR_DOMAIN_JOB_MEMORY_PROCESSED),
            stats?.GetULong(TypedParamFields.VIR_DOMAIN_JOB_MEMORY_TOTAL),
            stats?.GetULong(TypedParamFields.VIR_DOMAIN_JOB_MEMORY_ITERATION),
            stats?.GetULong(TypedParamFields.VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS),
            switchedAt,
            enteredPostCopy,
            fields);
    }

    /// <summary>
    /// QEMU before 9.0 corrupts a TCG guest on live pre-copy when RAM is a multiple of 256 KiB
    /// (fixed upstream by 03bfc2188f), and libvirt always rounds RAM to whole MiB: refuse rather
    /// than hand back a broken guest. Post-copy and KVM are not affected.
    /// </summary>
    private static void CheckPreCopyIsSafe(Connection source, LibvirtSharp.Domain domain, BaselineMode mode)
    {
        if (mode != BaselineMode.PreCopy || source.HypervisorVersion >= 9_000_000) return;
        if (domain.GetXml().Contains("<domain type='qemu'", StringComparison.Ordinal))
            throw new InvalidOperationException(
                $"pre-copy of a TCG guest with QEMU {source.HypervisorVersion / 1_000_000}.{source.HypervisorVersion / 1000 % 1000} corrupts guest memory; " +
                "use QEMU >= 9.0 (bookworm-backports has 10.0) or --mode postcopy");
    }

    /// <summary>Task.Wait that reports a faulted task as finished instead of throwing; the fault is read afterwards.</summary>
    private static bool Finished(Task task, TimeSpan wait)
    {
        try { return task.Wait(wait); }
        catch (AggregateException) { return true; }
    }

    private static bool ShouldSwitch(BaselineMode mode, JobStats sample) => mode switch
    {
        // libvirt reports the job before QEMU's migration has started; memory_total appears once it has.
        BaselineMode.PostCopyAtOnce => sample.GetULong(TypedParamFields.VIR_DOMAIN_JOB_MEMORY_TOTAL) > 0,
        // QEMU's dirty-sync count is 1 during the first pass and 2 once it has finished.
        BaselineMode.PostCopy => sample.GetULong(TypedParamFields.VIR_DOMAIN_JOB_MEMORY_ITERATION) >= 2,
        _ => false,
    };

    private static bool TryStartPostCopy(LibvirtSharp.Domain domain)
    {
        try
        {
            domain.MigrateStartPostCopy();
            return true;
        }
        catch (LibvirtException)
        {
            // Too early: libvirt has not yet set QEMU's postcopy-ram capability and started the
            // migration ("Enable postcopy with migrate_set_capability before the start of
            // migration"), or it has just finished. Try again on the next sample.
            return false;
        }
    }

    private static JobStats? TrySample(LibvirtSharp.Domain domain)
    {
        try { return domain.GetJobStats(); }
        catch (LibvirtException) { return null; } // the source domain goes away as the migration ends
    }

    private static bool IsPausedForPostCopy(LibvirtSharp.Domain domain)
    {
        try
        {
            var state = domain.State;
            return state.State == virDomainState.VIR_DOMAIN_PAUSED && state.Reason == (int)virDomainPausedReason.VIR_DOMAIN_PAUSED_POSTCOPY;
        }
        catch (LibvirtException) { return false; }
    }

    /// <summary>
    /// The destination keeps the completed job's statistics (the source sends them in its finish
    /// cookie), while the source domain may already be gone.
    /// </summary>
    private static JobStats? CompletedStats(Connection destination, string domainName)
    {
        using var domain = destination.TryLookupDomain(domainName);
        if (domain is null) return null;
        try
        {
            var stats = domain.GetJobStats(virDomainGetJobStatsFlags.VIR_DOMAIN_JOB_STATS_COMPLETED);
            return stats.Type == virDomainJobType.VIR_DOMAIN_JOB_NONE ? null : stats;
        }
        catch (LibvirtException) { return null; }
    }

    private static TimeSpan? Ms(ulong? ms) => ms is null ? null : TimeSpan.FromMilliseconds(ms.Value);
}
