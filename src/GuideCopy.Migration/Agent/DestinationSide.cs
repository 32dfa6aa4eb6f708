using System.Diagnostics;
using GuideCopy.MemoryPlane;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Definitions;
using GuideCopy.Transport;
using LibvirtSharp;
using LibvirtSharp.Native;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// The destination host's part of one migration: start a paused QEMU with <c>-incoming defer</c>
/// and the shim, take its uffd into a <see cref="Pager"/> before QEMU touches RAM, load the
/// device state, resume it (the commit point), and persist the definition once every page is in.
/// </summary>
public sealed class DestinationSide(AgentOptions options, byte[] secret, string migrationId, Action<string> log)
    : HostRole(options, secret, migrationId, log), IDisposable
{
    private Connection? _conn;
    private LibvirtSharp.Domain? _domain;
    private ShimListener? _shim;
    private ShimRegistration? _registration;
    private Pager? _pager;
    private Task<PagerStats>? _paging;
    private CancellationTokenSource? _pagingStop;

    /// <summary>Preflight on the destination: the name is free, the disks are reachable (shared storage).</summary>
    public static DestinationCheckResult Check(AgentOptions o, DestinationCheckRequest req)
    {
        var problems = new List<string>();
        using var conn = Connection.Open(o.LibvirtUri);
        using (var existing = conn.TryLookupDomain(req.Name))
        {
            if (existing is not null)
            {
                problems.Add($"destination: a domain named '{req.Name}' already exists there: remove or rename it first");
            }
        }

        foreach (var path in req.DiskPaths.Where(p => !File.Exists(p)))
        {
            problems.Add($"destination: disk {path} is not reachable there; guide-copy moves no disk data: put it on storage both hosts share");
        }

        return new DestinationCheckResult(problems);
    }

    /// <summary>
    /// Before the source pauses: start the destination QEMU paused with -incoming defer and the
    /// shim, and take its uffd. QEMU in 'inmigrate' does not touch guest RAM (a fresh tmpfs file
    /// stays empty until migrate-incoming), so the pager can start later; a fault that did come
    /// would wait in the uffd queue until then.
    /// </summary>
    public async Task<DestinationStartResult> PrepareAsync(DestinationPrepareRequest req, CancellationToken ct)
    {
        if (!File.Exists(Options.ShimLibrary))
        {
            throw new AgentException($"the QEMU shim {Options.ShimLibrary} is missing on this host: run scripts/host-setup");
        }

        IncomingQemu.CreateWorkDir(WorkDir);
        string shimSocket = Path.Combine(WorkDir, "shim.sock");
        _shim = new ShimListener(shimSocket) { Rejected = m => Log($"{Id}: refused a shim: {m}") };
        _conn = Connection.Open(Options.LibvirtUri);
        var sw = Stopwatch.StartNew();
        (_domain, _registration) = await IncomingQemu.StartPausedAsync(_conn, req.MigratableXml, xml => xml, Options, shimSocket, _shim, "destination", ct);
        double startMs = sw.Elapsed.TotalMilliseconds;
        Log($"{Id}: destination QEMU pid {_registration.QemuPid} started paused in {startMs:0} ms; uffd for {_registration.RamPath} ({_registration.PageCount} pages)");
        return new DestinationStartResult(startMs, 0, _registration.QemuPid);
    }

    /// <summary>After the source paused: start the pager against its page server and load the device state.</summary>
    public async Task<DestinationStartResult> LoadAsync(DestinationLoadRequest req, CancellationToken ct)
    {
        if (_registration is null || _domain is null)
        {
            throw new AgentException("destination not prepared");
        }

        _pager = new Pager(_registration, PagesHost.ParseEndpoint(req.PageServer), Secret) { Log = m => Log($"{Id}: pager: {m}") };
        _pagingStop = new CancellationTokenSource();
        _paging = _pager.RunAsync(_pagingStop.Token);
        var sw = Stopwatch.StartNew();
        await DeviceStateTransfer.LoadAsync(_domain, Path.Combine(WorkDir, "incoming.sock"), Convert.FromBase64String(req.DeviceState),
            TimeSpan.FromSeconds(Options.DeviceStateTimeoutSeconds), ct);
        double loadMs = sw.Elapsed.TotalMilliseconds;
        Log($"{Id}: device state loaded in {loadMs:0} ms");
        return new DestinationStartResult(0, loadMs, _registration.QemuPid);
    }

    /// <summary>The commit point: from here on the destination is the VM.</summary>
    public ResumeResult Resume()
    {
        (_domain ?? throw new AgentException("destination domain not started")).Resume();
        return new ResumeResult(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
    }

    public DestinationStatus Status()
    {
        var pager = _pager ?? throw new AgentException("no pager");
        var s = pager.Stats;
        bool done = _paging?.IsCompleted ?? false;
        if (_paging is { IsFaulted: true })
        {
            throw new AgentException($"pager failed: {_paging.Exception!.InnerException!.Message}");
        }

        return new DestinationStatus(done, s.Outcome?.ToString(), s.PageCount, s.DonePages, s.Faults, s.ZeroResolvedPages,
            s.DemandPages, s.PushPages, s.LocalityPages, s.BackgroundPages, s.RemovedPages, s.DuplicatePages,
            s.StallCount, s.StallP50.TotalMilliseconds, s.StallP99.TotalMilliseconds, s.StallMax.TotalMilliseconds, s.StallTotal.TotalMilliseconds,
            s.BytesReceived, s.Reconnects, s.Elapsed.TotalMilliseconds);
    }

    /// <summary>Every page is in: persist the source's definition here and clean up.</summary>
    public async Task<DestinationStatus> FinishAsync(string? persistentXml, CancellationToken ct)
    {
        if (_paging is null)
        {
            throw new AgentException("no pager");
        }

        await _paging.WaitAsync(ct);
        var status = Status();
        if (!string.IsNullOrEmpty(persistentXml))
        {
            // Defining the same name and UUID makes the running transient domain persistent,
            // with the source's own configuration (no -incoming, no shim) for its next boot.
            using var defined = _conn!.DefineDomain(persistentXml);
        }

        Log($"{Id}: complete: {status.DonePages} pages, {status.Faults} faults");
        Dispose();
        return status;
    }

    /// <summary>Rollback: destroy the transient destination QEMU (it never ran the guest) and clean up.</summary>
    public void Abort()
    {
        try
        {
            if (_domain is { IsActive: true })
            {
                _domain.Destroy();
            }
            else if (_domain is null && _conn is not null && _registration is not null)
            {
                // create may still be pending; the QEMU it started is found by its pid.
                try { Process.GetProcessById(_registration.QemuPid).Kill(); } catch (ArgumentException) { }
            }
        }
        catch (LibvirtException e)
        {
            Log($"{Id}: abort: {e.LibvirtMessage}");
        }

        Log($"{Id}: destination aborted");
        Dispose();
    }

    public void Dispose()
    {
        _pagingStop?.Cancel();
        _pager?.Dispose();
        _pager = null;
        _registration?.Dispose();
        _registration = null;
        _shim?.Dispose();
        _shim = null;
        _domain?.Dispose();
        _domain = null;
        _conn?.Dispose();
        _conn = null;
        RemoveWorkDir();
    }
}
