using System.Diagnostics;
using GuideCopy.MemoryPlane;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Definitions;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using LibvirtSharp;

namespace GuideCopy.Migration.Agent;

// Before the pause ends: the destination QEMU started paused, armed for its device state, and the state loaded.
public sealed partial class DestinationSide
{
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

        string name = req.Domain.Length > 0 ? req.Domain : DomainDefinition.Parse(req.MigratableXml).Name;
        // Journaled before QEMU starts: a restarted agent removes a copy that never ran.
        Record(new JournalEntry
        {
            Id = Id, Role = MigrationRole.Destination, Domain = name, Stage = MigrationStage.DestinationPrepared,
            PersistentXml = req.PersistentXml,
        });
        CreateWorkDir();
        var definition = DomainDefinition.Parse(req.MigratableXml);
        _domainDir = Work.CreateDomainDir(definition.Uuid, Qemu);
        string shimSocket = Path.Combine(_domainDir, "shim.sock");
        _shim = new ShimListener(shimSocket, DomainShimRules.For(Options, Qemu, definition.Name)) { Rejected = m => Log($"{Id}: refused a shim: {m}") };
        _conn = Connection.Open(Options.LibvirtUri);
        var sw = Stopwatch.StartNew();
        (_domain, _registration) = await IncomingQemu.StartPausedAsync(_conn, req.MigratableXml, xml => xml, Options, shimSocket, _shim, "destination", ct);
        double startMs = sw.Elapsed.TotalMilliseconds;
        Log($"{Id}: destination QEMU pid {_registration.QemuPid} started paused in {startMs:0} ms; uffd for {_registration.RamPath} ({_registration.PageCount} pages)");
        return new DestinationStartResult(startMs, 0, _registration.QemuPid);
    }

    /// <summary>
    /// Before the source pauses: the destination QEMU in migrate-incoming with this agent
    /// connected to it, and the pager's lanes to the source's armed page server authenticated,
    /// so the pause holds only the device state's own bytes and QEMU's own work.
    /// </summary>
    public async Task<DestinationArmResult> ArmAsync(DestinationArmRequest req, CancellationToken ct)
    {
        if (_registration is null || _domain is null || Stage != MigrationStage.DestinationPrepared || _deviceState.Armed)
        {
            throw new AgentException($"destination not prepared (migration {Id} is {Stage} here)");
        }

        var sw = Stopwatch.StartNew();
        // Journaled before QEMU is armed to start by itself: a restarted agent asks the domain
        // whether it ran before it removes anything.
        Record(Entry! with { PageServer = req.PageServer, SessionId = req.SessionId, ClearTextLanes = req.ClearTextLanes, StartsOnLoad = req.StartOnLoad });
        var timeout = TimeSpan.FromSeconds(Options.DeviceStateTimeoutSeconds);
        await _deviceState.ArmAsync(_domain, Path.Combine(_domainDir!, "incoming.sock"), req.StartOnLoad, timeout, ct);
        StartPager(_registration, req.PageServer, trustRamFile: false, deferPush: true);
        _deviceState.FeedFrom(_pager!, Options.DemandRealtimePriority);
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        await _pager!.LanesUp.WaitAsync(TimeSpan.FromSeconds(Options.ShimTimeoutSeconds), wait.Token);
        Log($"{Id}: armed in {sw.Elapsed.TotalMilliseconds:0} ms: QEMU in migrate-incoming, lanes to {req.PageServer} up");
        return new DestinationArmResult(Math.Round(sw.Elapsed.TotalMilliseconds, 1), HoldsWarmPages: true);
    }

    /// <summary>
    /// Asked before the source pauses: waits for the device state the source streams on the
    /// demand lane (written into QEMU as it comes), lets QEMU finish loading it and, with
    /// <see cref="DestinationLoadRequest.CommitWhenLoaded"/>, takes the commit point at once.
    /// </summary>
    public async Task<DestinationStartResult> LoadAsync(DestinationLoadRequest req, CancellationToken ct)
    {
        if (_registration is null || _domain is null || !_deviceState.Armed || Stage != MigrationStage.DestinationPrepared)
        {
            throw new AgentException($"destination not armed (migration {Id} is {Stage} here)");
        }

        var timeout = TimeSpan.FromSeconds(Options.DeviceStateTimeoutSeconds);
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        long length;
        if (Entry!.StartsOnLoad)
        {
            try
            {
                length = await _deviceState.LoadAsync(timeout, wait.Token);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                long ranAt = await SettleFailedLoadAsync(e);
                return new DestinationStartResult(0, 0, _registration.QemuPid, ResumedAtUnixMs: ranAt);
            }

            // QEMU started its vCPUs itself as the load completed: the pause is over.
            double loaded = Stopwatch.GetElapsedTime(_deviceState.EndedAt).TotalMilliseconds;
            AgentMetrics.PauseEnded(Stopwatch.GetElapsedTime(_deviceState.FirstByteAt).TotalMilliseconds);
            double written = (_deviceState.WrittenAt - _deviceState.EndedAt) * 1000.0 / Stopwatch.Frequency;
            long at = RunsHere($"it started itself once loaded, {loaded:0.0} ms after the last byte (written into QEMU {written:0.0} ms after it came at {DateTime.UtcNow - Stopwatch.GetElapsedTime(_deviceState.EndedAt):HH:mm:ss.ffffff})");
            return new DestinationStartResult(0, Math.Round(loaded, 2), _registration.QemuPid, ResumedAtUnixMs: at);
        }

        length = await _deviceState.LoadAsync(timeout, wait.Token);
        double loadMs = Stopwatch.GetElapsedTime(_deviceState.EndedAt).TotalMilliseconds;
        lock (_lock)
        {
            // A restarted agent treats "loaded" as "prepared" (the copy never ran: removed), so
            // the pause does not wait for this record; a held commit (the controller resumes
            // later) journals it for whoever looks.
            var loaded = Entry! with { Stage = MigrationStage.DestinationLoaded };
            if (req.CommitWhenLoaded)
            {
                Remember(loaded);
            }
            else
            {
                Record(loaded);
            }
        }

        Log($"{Id}: device state ({length} bytes) loaded {loadMs:0.0} ms after its last byte");
        double pausedMs = Stopwatch.GetElapsedTime(_deviceState.FirstByteAt).TotalMilliseconds;
        if (req.MaxDowntimeMs > 0 && pausedMs > req.MaxDowntimeMs)
        {
            // Before "Committing" is journaled: the controller rolls back and the source resumes.
            throw new AgentException($"the pause had lasted {pausedMs:0.0} ms when the device state was loaded, over --max-downtime {req.MaxDowntimeMs:0} ms: " +
                                     "not committing, the source resumes (raise --max-downtime, or migrate when the host is less busy)");
        }
        if (!req.CommitWhenLoaded)
        {
            return new DestinationStartResult(0, Math.Round(loadMs, 2), _registration.QemuPid);
        }

        var commit = Stopwatch.StartNew();
        var resumed = await ResumeAsync(ct, justLoaded: true);
        AgentMetrics.PauseEnded(Stopwatch.GetElapsedTime(_deviceState.FirstByteAt).TotalMilliseconds);
        return new DestinationStartResult(0, Math.Round(loadMs, 2), _registration.QemuPid,
            Math.Round(commit.Elapsed.TotalMilliseconds - _resumeMs, 2), Math.Round(_resumeMs, 2), resumed.ResumedAtUnixMs);
    }
}
