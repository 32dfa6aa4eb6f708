using System.Runtime.InteropServices;
using LibvirtSharp.Native;

namespace LibvirtSharp;

/// <summary>One domain (virDomainPtr). Disposing frees the reference, never the domain.</summary>
public sealed unsafe class Domain : IDisposable
{
    private readonly DomainHandle _handle;

    internal Domain(DomainHandle handle) => _handle = handle;

    /// <summary>The underlying handle, for calls into <see cref="Libvirt"/> the object model does not cover.</summary>
    public DomainHandle Handle => _handle;

    public string Name
    {
        get
        {
            using var d = _handle.Lease();
            return LibvirtStrings.Borrow(LibvirtException.ThrowIfNull(Libvirt.virDomainGetName(d.Pointer), nameof(Libvirt.virDomainGetName)))!;
        }
    }

    public string Uuid
    {
        get
        {
            using var d = _handle.Lease();
            byte* buf = stackalloc byte[Macros.VIR_UUID_STRING_BUFLEN];
            LibvirtException.ThrowIfNegative(Libvirt.virDomainGetUUIDString(d.Pointer, buf), nameof(Libvirt.virDomainGetUUIDString));
            return Marshal.PtrToStringUTF8((nint)buf)!;
        }
    }

    /// <summary>The hypervisor id, or null when the domain is not running.</summary>
    public uint? Id
    {
        get
        {
            using var d = _handle.Lease();
            uint id = Libvirt.virDomainGetID(d.Pointer);
            return id == uint.MaxValue ? null : id;
        }
    }

    public DomainState State
    {
        get
        {
            using var d = _handle.Lease();
            int state, reason;
            LibvirtException.ThrowIfNegative(Libvirt.virDomainGetState(d.Pointer, &state, &reason, 0), nameof(Libvirt.virDomainGetState));
            return new DomainState((virDomainState)state, reason);
        }
    }

    public bool IsActive => Bool(Libvirt.virDomainIsActive, nameof(Libvirt.virDomainIsActive));

    public bool IsPersistent => Bool(Libvirt.virDomainIsPersistent, nameof(Libvirt.virDomainIsPersistent));

    /// <summary>virDomainGetXMLDesc.</summary>
    public string GetXml(virDomainXMLFlags flags = 0)
    {
        using var d = _handle.Lease();
        return LibvirtStrings.Take(LibvirtException.ThrowIfNull(Libvirt.virDomainGetXMLDesc(d.Pointer, (uint)flags), nameof(Libvirt.virDomainGetXMLDesc)))!;
    }

    /// <summary>Starts a defined domain (virDomainCreateWithFlags).</summary>
    public void Start(virDomainCreateFlags flags = 0) => Call(d => Libvirt.virDomainCreateWithFlags(d, (uint)flags), nameof(Libvirt.virDomainCreateWithFlags));

    public void Suspend() => Call(Libvirt.virDomainSuspend, nameof(Libvirt.virDomainSuspend));

    public void Resume() => Call(Libvirt.virDomainResume, nameof(Libvirt.virDomainResume));

    /// <summary>Stops the domain at once (virDomainDestroyFlags); a transient domain is gone afterwards.</summary>
    public void Destroy(virDomainDestroyFlagsValues flags = 0) => Call(d => Libvirt.virDomainDestroyFlags(d, (uint)flags), nameof(Libvirt.virDomainDestroyFlags));

    /// <summary>Removes the persistent definition (virDomainUndefineFlags).</summary>
    public void Undefine(virDomainUndefineFlagsValues flags = 0) => Call(d => Libvirt.virDomainUndefineFlags(d, (uint)flags), nameof(Libvirt.virDomainUndefineFlags));

    /// <summary>virDomainQemuMonitorCommand: sends a QMP command (or HMP with the flag) and returns QEMU's reply.</summary>
    public string QemuMonitorCommand(string command, virDomainQemuMonitorCommandFlags flags = 0)
    {
        using var d = _handle.Lease();
        byte* result = null;
        LibvirtException.ThrowIfNegative(LibvirtQemu.virDomainQemuMonitorCommand(d.Pointer, command, &result, (uint)flags),
            nameof(LibvirtQemu.virDomainQemuMonitorCommand));
        return LibvirtStrings.Take((nint)result) ?? "";
    }

    /// <summary>
    /// virDomainQemuMonitorCommandWithFiles: like <see cref="QemuMonitorCommand"/>, passing
    /// <paramref name="inFiles"/> to QEMU with the command (SCM_RIGHTS, e.g. for <c>getfd</c>/<c>add-fd</c>);
    /// fds QEMU hands back are returned and owned by the caller. Needs a local UNIX-socket connection.
    /// </summary>
    public (string Reply, int[] OutFiles) QemuMonitorCommandWithFiles(string command, ReadOnlySpan<int> inFiles,
        virDomainQemuMonitorCommandFlags flags = 0)
    {
        using var d = _handle.Lease();
        byte* result = null;
        uint nOut = 0;
        int* outFiles = null;
        fixed (int* inp = inFiles)
        {
            LibvirtException.ThrowIfNegative(
                LibvirtQemu.virDomainQemuMonitorCommandWithFiles(d.Pointer, command, (uint)inFiles.Length, inp, &nOut, &outFiles, &result, (uint)flags),
                nameof(LibvirtQemu.virDomainQemuMonitorCommandWithFiles));
        }
        var fds = new int[nOut];
        for (int i = 0; i < nOut; i++) fds[i] = outFiles[i];
        NativeMemory.Free(outFiles);
        return (LibvirtStrings.Take((nint)result) ?? "", fds);
    }

    /// <summary>virDomainGetJobStats: the current job, or with VIR_DOMAIN_JOB_STATS_COMPLETED the last completed one.</summary>
    public JobStats GetJobStats(virDomainGetJobStatsFlags flags = 0)
    {
        using var d = _handle.Lease();
        int type, n = 0;
        virTypedParameter* p = null;
        LibvirtException.ThrowIfNegative(Libvirt.virDomainGetJobStats(d.Pointer, &type, &p, &n, (uint)flags), nameof(Libvirt.virDomainGetJobStats));
        try { return new JobStats((virDomainJobType)type, TypedParams.Read(p, n)); }
        finally { Libvirt.virTypedParamsFree(p, n); }
    }

    /// <summary>
    /// virDomainMigrateToURI3: with VIR_MIGRATE_PEER2PEER, <paramref name="destinationUri"/> is the
    /// destination libvirtd's URI as the source daemon sees it. Blocks until the migration ends.
    /// </summary>
    public void MigrateToUri3(string? destinationUri, TypedParams parameters, virDomainMigrateFlags flags)
    {
        using var d = _handle.Lease();
        LibvirtException.ThrowIfNegative(Libvirt.virDomainMigrateToURI3(d.Pointer, destinationUri, parameters.Pointer, (uint)parameters.Count, (uint)flags),
            nameof(Libvirt.virDomainMigrateToURI3));
    }

    /// <summary>virDomainMigrate3 (client-driven): returns the domain on <paramref name="destination"/>.</summary>
    public Domain Migrate3(Connection destination, TypedParams parameters, virDomainMigrateFlags flags)
    {
        using var d = _handle.Lease();
        using var c = destination.Handle.Lease();
        nint p = Libvirt.virDomainMigrate3(d.Pointer, c.Pointer, parameters.Pointer, (uint)parameters.Count, (uint)flags);
        return new Domain(new DomainHandle(LibvirtException.ThrowIfNull(p, nameof(Libvirt.virDomainMigrate3))));
    }

    /// <summary>Switches a running VIR_MIGRATE_POSTCOPY migration to post-copy (virDomainMigrateStartPostCopy).</summary>
    public void MigrateStartPostCopy(uint flags = 0) => Call(d => Libvirt.virDomainMigrateStartPostCopy(d, flags), nameof(Libvirt.virDomainMigrateStartPostCopy));

    /// <summary>virDomainMigrateSetMaxSpeed, in MiB/s (VIR_DOMAIN_MIGRATE_MAX_SPEED_POSTCOPY sets the post-copy phase's cap).</summary>
    public void MigrateSetMaxSpeed(ulong mebibytesPerSecond, virDomainMigrateMaxSpeedFlags flags = 0) =>
        Call(d => Libvirt.virDomainMigrateSetMaxSpeed(d, (nuint)mebibytesPerSecond, (uint)flags), nameof(Libvirt.virDomainMigrateSetMaxSpeed));

    public ulong MigrateGetMaxSpeed(virDomainMigrateMaxSpeedFlags flags = 0)
    {
        using var d = _handle.Lease();
        nuint v;
        LibvirtException.ThrowIfNegative(Libvirt.virDomainMigrateGetMaxSpeed(d.Pointer, &v, (uint)flags), nameof(Libvirt.virDomainMigrateGetMaxSpeed));
        return v;
    }

    /// <summary>virDomainMigrateSetMaxDowntime, in milliseconds (pre-copy's switchover target).</summary>
    public void MigrateSetMaxDowntime(ulong milliseconds) =>
        Call(d => Libvirt.virDomainMigrateSetMaxDowntime(d, milliseconds, 0), nameof(Libvirt.virDomainMigrateSetMaxDowntime));

    /// <summary>virDomainAbortJob: cancels the running job (e.g. a migration before switchover).</summary>
    public void AbortJob() => Call(Libvirt.virDomainAbortJob, nameof(Libvirt.virDomainAbortJob));

    private void Call(Func<nint, int> call, string operation)
    {
        using var d = _handle.Lease();
        LibvirtException.ThrowIfNegative(call(d.Pointer), operation);
    }

    private bool Bool(Func<nint, int> call, string operation)
    {
        using var d = _handle.Lease();
        int rc = call(d.Pointer);
        LibvirtException.ThrowIfNegative(rc, operation);
        return rc == 1;
    }

    public void Dispose() => _handle.Dispose();
}
