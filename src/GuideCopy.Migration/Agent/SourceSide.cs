using System.Diagnostics;
using System.Net;
using System.Text.Json;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Definitions;
using GuideCopy.Migration.Guide;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using GuideCopy.Transport;
using LibvirtSharp;
using LibvirtSharp.Native;
using Mono.Unix.Native;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// The source host's part of one migration: pause the domain, save its device state, serve its
/// frozen RAM file to the destination; at the end destroy it, or on rollback resume it.
/// The commit decision is taken here, once, and journaled before it is told
/// (<see cref="DecideCommit"/>): the destination resumes only on "committed", and from then on
/// this side refuses to resume the source, whoever asks (the controller, a lease that ran out,
/// a restarted agent).
/// </summary>
public sealed class SourceSide(AgentOptions options, byte[] secret, string migrationId, MigrationJournal journal, AgentLog log)
    : HostRole(options, secret, migrationId, log), IDisposable
{
    private readonly object _decision = new();
    private JournalEntry? _entry;
    private Connection? _conn;
    private LibvirtSharp.Domain? _domain;
    private PageServer? _server;
    private GuideRun? _guide;
    private Task? _guideStart;
    private Task? _cleanup;
    private SourceFinishResult? _result;
    private DeviceStateTransfer.ArmedSave? _save;
    private PendingGuide? _pendingGuide;

    private sealed record PendingGuide(SwitchoverRequest Request, byte[] State);
    // Set once the save's outcome is known (saved, or rolled back).
    private readonly ManualResetEventSlim _saved = new(false);

    /// <summary>This side's stage (Preflight until it pauses anything).</summary>
    public MigrationStage Stage => _entry?.Stage ?? MigrationStage.Preflight;

    public string Domain => _entry?.Domain ?? "";

    public JournalEntry? Entry => _entry;

    /// <summary>Everything about the domain the controller needs before it pauses anything.</summary>
    public static SourcePrepareResult Prepare(AgentOptions o, string name)
    {
        using var conn = Connection.Open(o.LibvirtUri);
        using var dom = conn.TryLookupDomain(name)
            ?? throw new AgentException($"domain '{name}' not found on {conn.Hostname} ({o.LibvirtUri})");
        if (!dom.IsActive)
        {
            throw new AgentException($"domain '{name}' is not running: start it, or move its definition instead of migrating");
        }

        var def = DomainDefinition.Parse(dom.GetXml());
        var problems = DomainRequirements.Check(def).ToList();
        string ramPath = "";
        string fs = "";
        if (def.MemorySourceType == "file")
        {
            ramPath = FindRamFile(o, dom.Id ?? 0, name);
            if (ramPath.Length == 0)
            {
                problems.Add($"domain '{name}': its RAM file is not under {o.RamDir}: set memory_backing_dir = \"{o.RamDir}\" in /etc/libvirt/qemu.conf (a tmpfs or hugetlbfs directory) and restart the domain");
            }
            else
            {
                fs = HostFactsReader.FileSystemOf(Path.GetDirectoryName(ramPath)!).FileSystem;
                if (fs is not ("tmpfs" or "hugetlbfs"))
                {
                    problems.Add($"domain '{name}': its RAM file {ramPath} is on {fs}; userfaultfd MISSING mode needs tmpfs or hugetlbfs: point memory_backing_dir in qemu.conf at one");
                }
            }
        }

        bool persistent = dom.IsPersistent;
        return new SourcePrepareResult(
            def.Name, def.Uuid,
            DestinationXml.WithoutOurAdditions(dom.GetXml(virDomainXMLFlags.VIR_DOMAIN_XML_MIGRATABLE)),
            persistent ? dom.GetXml(virDomainXMLFlags.VIR_DOMAIN_XML_INACTIVE | virDomainXMLFlags.VIR_DOMAIN_XML_MIGRATABLE) : "",
            persistent, ramPath, def.MemoryBytes, fs, problems);
    }

    /// <summary>libvirt names file RAM &lt;memory_backing_dir&gt;/libvirt/qemu/&lt;id&gt;-&lt;name&gt;/&lt;block&gt;.</summary>
    private static string FindRamFile(AgentOptions o, uint id, string name)
    {
        string dir = Path.Combine(o.RamDir, "libvirt", "qemu", $"{id}-{name}");
        if (!Directory.Exists(dir))
        {
            return "";
        }

        var files = Directory.GetFiles(dir);
        return files.FirstOrDefault(f => Path.GetFileName(f) is "pc.ram" or "pc.ram0") ?? (files.Length == 1 ? files[0] : "");
    }

    /// <summary>
    /// Before the source pauses: start the guide's QEMU paused (its start-up then costs no
    /// downtime). A guide that cannot start is not fatal: the migration goes on without it.
    /// </summary>
    public async Task<Empty> PrepareGuideAsync(GuidePrepareRequest req, CancellationToken ct)
    {
        var prepared = Prepare(Options, req.Domain);
        var (_, free) = HostFactsReader.FileSystemOf(Options.RamDir);
        if (free < prepared.RamBytes)
        {
            throw new AgentException($"source: RAM dir {Options.RamDir} has {free >> 20} MiB free; the guide needs {prepared.RamBytes >> 20} MiB: enlarge the tmpfs or migrate with --guide off");
        }

        CreateWorkDir();
        // Journaled before the guide's QEMU exists: a restarted agent destroys a guide it finds.
        Record(new JournalEntry { Id = Id, Role = MigrationRole.Source, Domain = req.Domain, Stage = MigrationStage.Preflight, Note = "guide prepared" });
        _guide = new GuideRun(Options, Work, Qemu, Id, Log);
        try
        {
            await _guide.PrepareAsync(prepared.MigratableXml, req.Domain, ct);
        }
        catch
        {
            _guide.Stop("failed to start");
            _guide = null;
            throw;
        }

        return new Empty();
    }

    /// <summary>
    /// Before the pause, everything the pause would otherwise wait for: the domain checked, the
    /// libvirt handles open, the frozen-RAM link made (the same inode, so it holds the content
    /// the pause freezes), the page server listening and accepting the destination's lanes
    /// without serving a page, x-ignore-shared on and the device-state socket listening.
    /// </summary>
    public Task<SourceArmResult> ArmAsync(SourceArmRequest req, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        var prepared = Prepare(Options, req.Domain);
        if (prepared.Problems.Count > 0)
        {
            throw new AgentException(string.Join("; ", prepared.Problems));
        }

        CreateWorkDir();
        // The source QEMU connects to the agent's devstate.sock, in its own domain's directory.
        string domainDir = Work.CreateDomainDir(prepared.Uuid, Qemu);
        _conn ??= Connection.Open(Options.LibvirtUri);
        _domain ??= _conn.LookupDomain(req.Domain);
        int pageSize = PageSizeOf(prepared.RamPath);
        string frozen = HoldFrozenRam(prepared.RamPath);
        // Journaled before anything of QEMU's changes: a restarted agent drops the link and the capability.
        Record((_entry ?? new JournalEntry { Id = Id, Role = MigrationRole.Source, Domain = req.Domain, Stage = MigrationStage.Preflight }) with
        {
            Stage = MigrationStage.Preflight, Note = "armed", StartedAt = _entry?.StartedAt ?? DateTimeOffset.UtcNow,
            Persistent = prepared.Persistent, PageListen = Options.PageListen, PageSize = pageSize, FrozenRam = frozen,
            BandwidthBytesPerSecond = req.BandwidthBytesPerSecond, ClearTextLanes = req.ClearTextLanes, KeepDefinition = req.KeepDefinition,
        });
        _server = StartServer(frozen, pageSize, req.BandwidthBytesPerSecond, req.Push, 0, armed: true);
        _save = DeviceStateTransfer.ArmSave(_domain, Path.Combine(domainDir, "devstate.sock"), Qemu.Gid);
        Log($"{Id}: armed: page server on {_server.LocalEndPoint} ({_server.PageCount} pages of {pageSize} B), device-state socket listening");
        return Task.FromResult(new SourceArmResult(Options.AdvertisedPageEndpoint(), _server.SessionId, _server.PageCount,
            Handshake.Describe(ProtectionOf(_entry)), Math.Round(sw.Elapsed.TotalMilliseconds, 1)));
    }

    /// <summary>
    /// Downtime starts here: suspend; the device state (RAM excluded) streamed to the destination
    /// on its demand lane as QEMU writes it; then the page server serves the frozen RAM. Nothing
    /// here grows with RAM: the holes are looked for after the freeze, on a thread of their own.
    /// Any failure resumes the domain before the error goes back.
    /// </summary>
    public async Task<SwitchoverResult> SwitchoverAsync(SwitchoverRequest req, CancellationToken ct)
    {
        if (_server is null || _save is null || _domain is null || Stage != MigrationStage.Preflight)
        {
            throw new AgentException($"migration {Id} is not armed here ({Stage}): arm it first");
        }

        if (!_server.DemandLaneUp)
        {
            throw new AgentException($"migration {Id}: the destination's lanes are not connected to the page server: nothing was paused");
        }

        // Journaled before the suspend: an agent that dies from here on finds the entry and
        // resumes the domain (nothing was decided yet).
        Record(_entry! with { Stage = MigrationStage.SourcePaused, Note = null, SessionId = _server.SessionId });
        // No separate suspend: QEMU's migrate stops the vCPUs itself once nothing but device
        // state is left (migration_completion -> vm_stop_force_state(FINISH_MIGRATE)), and with
        // x-ignore-shared that is at once. So the migration's setup runs before the pause, and
        // the pause starts inside QEMU, not a libvirt round trip earlier. A migrate that fails
        // before that point leaves the VM running; after it, paused (Abort resumes it).
        var sw = Stopwatch.StartNew();
        long suspendedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        double suspendMs = 0;
        try
        {
            var server = _server;
            var timeout = TimeSpan.FromSeconds(Options.DeviceStateTimeoutSeconds);
            sw.Restart();
            byte[] state = await _save.SaveAsync(piece => server.SendDeviceState(piece.Span), timeout, ct);
            server.EndDeviceState();
            double saveMs = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            server.Freeze();
            double freezeMs = sw.Elapsed.TotalMilliseconds;
            // The destination loads meanwhile; its commit question waits for this verdict (DecideCommit).
            await _save.ConfirmAsync(timeout, ct);
            lock (_decision)
            {
                if (Stage != MigrationStage.SourcePaused)
                {
                    throw new AgentException($"migration {Id} was {Stage} during its switchover ({_entry!.Note})");
                }

                Record(_entry! with { Stage = MigrationStage.DeviceStateSaved, SuspendedAtUnixMs = suspendedAt });
            }

            _saved.Set();
            // The guide's QEMU loads and runs once the destination runs (its push lane comes):
            // started now, it would take the CPU the destination's load and resume need.
            _pendingGuide = new PendingGuide(req, state);
            server.PushLaneUp = () =>
            {
                if (Interlocked.Exchange(ref _pendingGuide, null) is { } g)
                {
                    StartGuide(g.Request, g.State);
                }
            };
            Log($"{Id}: {req.Domain} paused by its migrate; device state {state.Length} bytes streamed in {saveMs:0.0} ms (migrate to the stream's end); serving {server.PageCount} pages");
            return new SwitchoverResult(state.Length, server.PageCount, suspendedAt, Math.Round(suspendMs, 2), Math.Round(saveMs, 2), Math.Round(freezeMs, 2));
        }
        catch
        {
            Abort("the switchover failed");
            throw;
        }
    }

    /// <summary>The guide resumes beside the destination on the frozen RAM; its start never adds downtime.</summary>
    private void StartGuide(SwitchoverRequest req, byte[] state)
    {
        if (_guide is not null && req.Guide is { Enabled: true } control)
        {
            var guide = _guide;
            var server = _server!;
            string frozen = _entry!.FrozenRam!;
            _guideStart = Task.Run(async () =>
            {
                try
                {
                    await guide.StartAsync(frozen, server, state, control, CancellationToken.None);
                }
                catch (Exception e)
                {
                    guide.Stop($"failed to start: {e.Message}");
                }
            }, CancellationToken.None);
        }
        else
        {
            _guide?.Stop("disabled");
        }
    }

    /// <summary>hugetlbfs RAM has the mount's huge page size as its page; tmpfs 4 KiB.</summary>
    private static int PageSizeOf(string ramPath)
    {
        var fs = HostFactsReader.FileSystemOf(Path.GetDirectoryName(ramPath)!).FileSystem;
        if (fs == "hugetlbfs" && Syscall.statvfs(ramPath, out var st) == 0 && st.f_bsize >= 4096)
        {
            return (int)st.f_bsize;
        }

        return 4096;
    }

    /// <summary>
    /// Our own hard link to the RAM file, in the same file system: libvirt removes its path when
    /// the source QEMU goes (a crash, a destroy), and the link keeps the frozen content until the
    /// destination has every page, across agent restarts too (an open fd would die with us).
    /// </summary>
    private string HoldFrozenRam(string ramPath)
    {
        string dir = Path.Combine(Options.RamDir, "guidecopy-frozen");
        Directory.CreateDirectory(dir);
        File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string link = Path.Combine(dir, Id + ".ram");
        File.Delete(link);
        if (Syscall.link(ramPath, link) != 0)
        {
            throw new AgentException($"source: cannot hold the frozen RAM {ramPath} ({Stdlib.GetLastError()}): the RAM dir must be one tmpfs or hugetlbfs");
        }

        return link;
    }

    private PageServer StartServer(string frozen, int pageSize, long bandwidth, bool push, ulong sessionId, bool armed = false)
    {
        var server = new PageServer(frozen, new PageServerOptions
        {
            Secret = MigrationKey,
            Protection = ProtectionOf(_entry),
            Listen = IPEndPoint.Parse(Options.PageListen),
            BandwidthBytesPerSecond = bandwidth,
            PushEnabled = push,
            PageSize = pageSize,
            DemandRealtimePriority = Options.DemandRealtimePriority,
            SessionId = sessionId,
            Armed = armed,
        })
        {
            Log = m => Log($"{Id}: page server: {m}"),
            CommitRequested = DecideCommit,
            DoneReported = OnDestinationDone,
            DoneAcknowledged = StartCleanup,
        };
        server.Start();
        return server;
    }

    /// <summary>
    /// The destination asks before it resumes. Committed is journaled before the answer goes out,
    /// so an answer once given is never taken back; a source that rolled back says so for ever.
    /// </summary>
    private bool DecideCommit()
    {
        // Asked while the source QEMU's verdict on its save may still be coming: wait for it
        // (a "rolled back" now would make the destination destroy a copy nobody rolled back).
        _saved.Wait(TimeSpan.FromSeconds(Options.DeviceStateTimeoutSeconds));
        lock (_decision)
        {
            switch (Stage)
            {
                case MigrationStage.Committed or MigrationStage.Completed:
                    return true;
                case MigrationStage.DeviceStateSaved:
                    Record(_entry! with { Stage = MigrationStage.Committed, Note = null });
                    Log($"{Id}: committed: the destination resumes; this host never resumes {Domain} again");
                    return true;
                default:
                    return false;
            }
        }
    }

    /// <summary>The destination has every page: record it, then destroy the source copy (not on the server's thread).</summary>
    private void OnDestinationDone()
    {
        lock (_decision)
        {
            if (Stage == MigrationStage.Completed || !Stage.IsCommitted())
            {
                return;
            }

            _result = CollectResult("migration complete");
            Record(_entry! with { Stage = MigrationStage.Completed, Result = JsonSerializer.SerializeToNode(_result, ControlChannel.Json)!.AsObject() });
            Log($"{Id}: the destination has every page");
        }
    }

    private SourceFinishResult CollectResult(string guideReason)
    {
        _guideStart?.Wait(TimeSpan.FromSeconds(30));
        var guideStats = _guide?.Stop(guideReason);
        return new SourceFinishResult(_server?.Counters ?? default, guideStats);
    }

    /// <summary>
    /// The controller's view of the end: the counters of the source's part. Idempotent; the
    /// source finishes by itself when the destination reports every page in, and this only
    /// waits for that (or, with an older destination, drives it).
    /// </summary>
    public SourceFinishResult Finish()
    {
        if (Stage == MigrationStage.Committed)
        {
            // The controller saw every page in at the destination before its Done reached us.
            OnDestinationDone();
        }

        if (Stage != MigrationStage.Completed)
        {
            throw new AgentException($"migration {Id} is {Stage} on the source: nothing to finish");
        }

        StartCleanup();
        _cleanup!.Wait(TimeSpan.FromSeconds(60));
        return _result ?? _entry!.Result.Deserialize<SourceFinishResult>(ControlChannel.Json)
            ?? new SourceFinishResult(default);
    }

    /// <summary>Destroys the source copy once, whoever asks first (the destination's Done, or the controller's finish).</summary>
    private void StartCleanup()
    {
        lock (_decision)
        {
            _cleanup ??= Task.Run(DestroySourceCopy);
        }
    }

    /// <summary>Nothing of this migration is left to do here: ended, and its source copy (if any) removed.</summary>
    public bool Settled => Stage.IsFinal() && (Stage != MigrationStage.Completed || _cleanup is { IsCompleted: true });

    private void DestroySourceCopy()
    {
        _server?.Stop();
        if (_entry is { SourceRemoved: false })
        {
            try
            {
                _conn ??= Connection.Open(Options.LibvirtUri);
                using var dom = _conn.TryLookupDomain(Domain);
                // The copy we froze is paused (or shut off, if its QEMU died); a running domain of
                // that name is not it (the VM may have come back here since).
                var state = dom?.State.State;
                if (dom is not null && state is virDomainState.VIR_DOMAIN_PAUSED or virDomainState.VIR_DOMAIN_SHUTOFF or virDomainState.VIR_DOMAIN_CRASHED)
                {
                    if (dom.IsActive)
                    {
                        dom.Destroy();
                    }

                    bool undefine = _entry.Persistent && dom.IsPersistent && !_entry.KeepDefinition;
                    if (undefine)
                    {
                        dom.Undefine(virDomainUndefineFlagsValues.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM);
                    }

                    Log($"{Id}: source domain destroyed{(undefine ? " and undefined" : _entry.KeepDefinition && dom.IsPersistent ? "; its definition kept (shut off)" : "")}");
                }
                else if (dom is not null)
                {
                    Log($"{Id}: left {Domain} alone: it is {state}, not the paused copy this migration froze");
                }

                ReleaseFrozenRam();
                Record(_entry with { SourceRemoved = true });
            }
            catch (LibvirtException e)
            {
                Lines.Error($"{Id}: could not remove the source copy of {Domain}: {e.LibvirtMessage}; remove it with 'virsh destroy {Domain}' (the VM runs on the destination)");
            }
        }

        Dispose();
    }

    /// <summary>
    /// Rollback: stop serving and resume the untouched source (QEMU resumes from 'postmigrate').
    /// Refused once the commit decision is taken: the VM runs on the destination.
    /// </summary>
    public void Abort(string why)
    {
        lock (_decision)
        {
            if (Stage.IsCommitted())
            {
                throw new AgentException($"migration {Id} is committed: {Domain} runs on the destination and the source will not resume; the transfer goes on (follow it with 'guidecopy job {Id}')");
            }

            if (_entry is not null && Stage != MigrationStage.RolledBack)
            {
                Record(_entry with { Stage = MigrationStage.RolledBack, Note = why });
            }
        }

        _saved.Set();
        _guideStart?.Wait(TimeSpan.FromSeconds(30));
        _guide?.Stop("rolled back");
        _server?.Stop();
        try
        {
            _conn ??= Connection.Open(Options.LibvirtUri);
            using var dom = Domain.Length > 0 ? _conn.TryLookupDomain(Domain) : null;
            if (dom is { IsActive: true })
            {
                // x-ignore-shared off again: left on, a later libvirt migration of this VM carries no RAM.
                DeviceStateTransfer.DisarmCapabilities(dom);
            }

            if (dom is not null && dom.State.State == virDomainState.VIR_DOMAIN_PAUSED)
            {
                dom.Resume();
                Log($"{Id}: rolled back ({why}): source resumed");
            }
        }
        finally
        {
            ReleaseFrozenRam();
            Dispose();
        }
    }

    private void ReleaseFrozenRam()
    {
        if (_entry?.FrozenRam is { } frozen)
        {
            File.Delete(frozen);
        }
    }

    /// <summary>
    /// The agent stops (SIGTERM, systemctl stop/restart). A committed migration goes on in the
    /// next agent (its journal entry and the frozen RAM link stay); anything earlier rolls back.
    /// </summary>
    public void Shutdown()
    {
        if (Stage.IsCommitted() && Stage != MigrationStage.Completed)
        {
            Log($"{Id}: agent stopping mid-transfer; the next agent serves {_entry!.FrozenRam} again");
            _guide?.Stop("agent stopping");
            Dispose();
            return;
        }

        if (Stage != MigrationStage.Completed)
        {
            try
            {
                Abort("the agent stopped before the commit point");
            }
            catch (AgentException e)
            {
                Log(e.Message);
            }
        }
        else
        {
            _cleanup?.Wait(TimeSpan.FromSeconds(30));
        }
    }

    /// <summary>
    /// A starting agent finds this migration in its journal: before the decision it resumes the
    /// source (nothing was promised to the destination); after it, it serves the frozen RAM
    /// again from the same address and session; at the end it removes what is left.
    /// </summary>
    public static SourceSide? Recover(AgentOptions options, byte[] secret, MigrationJournal journal, JournalEntry entry, AgentLog log)
    {
        var side = new SourceSide(options, secret, entry.Id, journal, log) { _entry = entry };
        side.AdoptWorkDir();
        side.DestroyGuide();
        switch (entry.Stage)
        {
            case MigrationStage.Preflight:
                side.Record(entry with { Stage = MigrationStage.RolledBack, Note = "the source agent restarted before the switchover" });
                if (entry.FrozenRam is not null)
                {
                    // Armed, never paused: the link and QEMU's capability go, the VM ran all along.
                    side.DisarmRunningDomain();
                    side.ReleaseFrozenRam();
                }

                side.Dispose();
                return null;
            case MigrationStage.SourcePaused or MigrationStage.DeviceStateSaved:
                log.Info($"{entry.Id}: found a migration of {entry.Domain} that was not committed: rolling back");
                side.Abort("the source agent restarted before the commit point");
                return null;
            case MigrationStage.Committed when entry.FrozenRam is { } frozen && File.Exists(frozen):
                side._server = side.StartServer(frozen, entry.PageSize, entry.BandwidthBytesPerSecond, push: true, entry.SessionId);
                log.Info($"{entry.Id}: found a committed migration of {entry.Domain}: serving {frozen} again (session {entry.SessionId:x16})");
                return side;
            case MigrationStage.Committed:
                side.Record(entry with { Stage = MigrationStage.Failed, Note = $"the frozen RAM {entry.FrozenRam} is gone: pages the destination lacks are lost" });
                log.Info($"{entry.Id}: committed, but the frozen RAM {entry.FrozenRam} is gone; the destination cannot finish");
                return null;
            case MigrationStage.Completed when !entry.SourceRemoved:
                side.DestroySourceCopy(); // a crash came between the record and the destroy
                return null;
            default:
                return null;
        }
    }

    private void DisarmRunningDomain()
    {
        try
        {
            _conn ??= Connection.Open(Options.LibvirtUri);
            using var dom = _conn.TryLookupDomain(Domain);
            if (dom is { IsActive: true })
            {
                DeviceStateTransfer.DisarmCapabilities(dom);
            }
        }
        catch (LibvirtException e)
        {
            Lines.Warning($"{Id}: could not turn x-ignore-shared off on {Domain}: {e.LibvirtMessage}");
        }
    }

    /// <summary>The guide of a migration an earlier agent ran is of no use to this one.</summary>
    private void DestroyGuide()
    {
        try
        {
            _conn ??= Connection.Open(Options.LibvirtUri);
            using var guide = _conn.TryLookupDomain(GuideRun.GuideName(Domain));
            if (guide is { IsActive: true } && !guide.IsPersistent)
            {
                guide.Destroy();
                Log($"{Id}: destroyed the guide an earlier agent left running");
            }
        }
        catch (LibvirtException e)
        {
            Lines.Warning($"{Id}: could not check for a leftover guide: {e.LibvirtMessage}");
        }
    }

    private void Record(JournalEntry entry)
    {
        var before = _entry;
        journal.Write(entry);
        _entry = entry;
        Journaled(before, entry);
    }

    public void Dispose()
    {
        _save?.Dispose();
        _save = null;
        _guide?.Dispose();
        _guide = null;
        _server?.Dispose();
        _server = null;
        _domain?.Dispose();
        _domain = null;
        _conn?.Dispose();
        _conn = null;
        if (Stage is MigrationStage.Committed)
        {
            return; // the work dir is the next agent's
        }

        RemoveWorkDir();
    }
}
