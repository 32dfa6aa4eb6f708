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
    private bool _committed, _finished;
    private Task? _recovery;

    /// <summary>What a restarted agent needs to take a committed migration over again (WorkDir/session.json).</summary>
    public sealed record Session(string MigrationId, string PageServer);

    private const string SessionFile = "session.json";

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

        File.WriteAllText(Path.Combine(WorkDir, SessionFile), System.Text.Json.JsonSerializer.Serialize(new Session(Id, req.PageServer)));
        StartPager(_registration, req.PageServer, trustRamFile: false);
        var sw = Stopwatch.StartNew();
        await DeviceStateTransfer.LoadAsync(_domain, Path.Combine(WorkDir, "incoming.sock"), Convert.FromBase64String(req.DeviceState),
            TimeSpan.FromSeconds(Options.DeviceStateTimeoutSeconds), ct);
        double loadMs = sw.Elapsed.TotalMilliseconds;
        Log($"{Id}: device state loaded in {loadMs:0} ms");
        return new DestinationStartResult(0, loadMs, _registration.QemuPid);
    }

    private void StartPager(ShimRegistration registration, string pageServer, bool trustRamFile)
    {
        _pager = new Pager(registration, PagesHost.ParseEndpoint(pageServer), Secret, new PagerOptions { TrustRamFile = trustRamFile, DemandRealtimePriority = Options.DemandRealtimePriority, PushRealtimePriority = Options.PushRealtimePriority })
        {
            Log = m => Log($"{Id}: pager: {m}"),
        };
        _pagingStop = new CancellationTokenSource();
        _paging = _pager.RunAsync(_pagingStop.Token);
    }

    /// <summary>The commit point: from here on the destination is the VM.</summary>
    public ResumeResult Resume()
    {
        (_domain ?? throw new AgentException("destination domain not started")).Resume();
        _committed = true;
        return new ResumeResult(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
    }

    /// <summary>
    /// A restarted agent takes over a committed migration it finds in its work directory. The
    /// shim kept its copy of the uffd (the VM stalled instead of reading zeros) and connects
    /// again to the same socket; the pager rebuilds its bitmap from the pages already in the RAM
    /// file and the source's page server resumes the push from there.
    /// </summary>
    public static DestinationSide? Recover(AgentOptions options, byte[] secret, string workDir, Action<string> log)
    {
        string file = Path.Combine(workDir, SessionFile);
        if (!File.Exists(file) || System.Text.Json.JsonSerializer.Deserialize<Session>(File.ReadAllText(file)) is not { } session)
        {
            return null;
        }

        var side = new DestinationSide(options, secret, session.MigrationId, log) { _committed = true };
        side._conn = Connection.Open(options.LibvirtUri);
        side._shim = new ShimListener(Path.Combine(workDir, "shim.sock")) { Rejected = m => log($"{session.MigrationId}: refused a shim: {m}") };
        side._recovery = Task.Run(async () =>
        {
            var registration = await side._shim.AcceptAsync();
            side._registration = registration;
            side.StartPager(registration, session.PageServer, trustRamFile: true);
            log($"{session.MigrationId}: recovered after an agent restart: the shim handed its uffd again (QEMU pid {registration.QemuPid})");
        });
        log($"{session.MigrationId}: found a committed migration; waiting for its shim to reconnect");
        return side;
    }

    public DestinationStatus Status()
    {
        if (_pager is null && _recovery is { IsCompleted: false })
        {
            // Recovering: the shim has not reconnected yet; the VM waits in its faults.
            return new DestinationStatus(false, null, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        }

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
        if (_recovery is not null)
        {
            await _recovery.WaitAsync(ct);
        }

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
        _finished = true;
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
        if (_committed && !_finished)
        {
            // The agent stops with a committed migration unfinished: keep its session so the
            // next agent takes it over (the shim holds the uffd meanwhile).
            Log($"{Id}: agent stopping mid-transfer; the session stays in {WorkDir} for the next agent");
            return;
        }

        RemoveWorkDir();
    }
}
