using System.Diagnostics;
using System.Net.Sockets;
using System.Text.Json;
using GuideCopy.MemoryPlane;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Definitions;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using GuideCopy.Transport;
using LibvirtSharp;
using LibvirtSharp.Native;
using GuideCopy.Interop;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// The destination host's part of one migration: start a paused QEMU with <c>-incoming defer</c>
/// and the shim, take its uffd into a <see cref="Pager"/> before QEMU touches RAM, load the
/// device state, resume it once the source has recorded the commit decision (the commit point),
/// and, once every page is in, persist the definition and tell the source to let its copy go:
/// all of it without the controller, from the journal, across restarts of this agent.
/// </summary>
public sealed class DestinationSide(AgentOptions options, byte[] secret, string migrationId, MigrationJournal journal, AgentLog log)
    : HostRole(options, secret, migrationId, log), IDisposable
{
    private readonly object _lock = new();
    private readonly CancellationTokenSource _stop = new();
    private JournalEntry? _entry;
    private Connection? _conn;
    private LibvirtSharp.Domain? _domain;
    private ShimListener? _shim;
    private string? _domainDir;
    private ShimRegistration? _registration;
    private Pager? _pager;
    private Task<PagerCounters>? _paging;
    private CancellationTokenSource? _pagingStop;
    private Task<bool>? _decision;
    private DeviceStateTransfer.ArmedLoad? _load;
    private readonly TaskCompletionSource<long> _deviceState = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _deviceStateEndAt;

    /// <summary>The first device-state byte's arrival: QEMU sends its header just before it stops the vCPUs, so the pause began at most this early.</summary>
    private long _deviceStateFirstAt;
    private double _resumeMs;
    private Task? _completion, _recovery, _release;
    private DestinationStatus? _final;

    public MigrationStage Stage => _entry?.Stage ?? MigrationStage.Preflight;

    public string Domain => _entry?.Domain ?? "";

    public JournalEntry? Entry => _entry;

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
        if (_registration is null || _domain is null || Stage != MigrationStage.DestinationPrepared || _load is not null)
        {
            throw new AgentException($"destination not prepared (migration {Id} is {Stage} here)");
        }

        var sw = Stopwatch.StartNew();
        Record(_entry! with { PageServer = req.PageServer, SessionId = req.SessionId, ClearTextLanes = req.ClearTextLanes });
        var timeout = TimeSpan.FromSeconds(Options.DeviceStateTimeoutSeconds);
        _load = await DeviceStateTransfer.ArmLoadAsync(_domain, Path.Combine(_domainDir!, "incoming.sock"), timeout, ct);
        StartPager(_registration, req.PageServer, trustRamFile: false, deferPush: true);
        var load = _load;
        _pager!.DeviceStateReceived = bytes =>
        {
            if (_deviceStateFirstAt == 0)
            {
                _deviceStateFirstAt = Stopwatch.GetTimestamp();
            }

            try
            {
                load.Write(bytes);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // QEMU refused its stream (it exited?): the load fails, and with it the commit.
                _deviceState.TrySetException(new AgentException($"the destination QEMU stopped taking its device state: {e.Message}"));
            }
        };
        _pager.DeviceStateEnded = length =>
        {
            _deviceStateEndAt = Stopwatch.GetTimestamp();
            _deviceState.TrySetResult(length);
        };
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        await _pager.LanesUp.WaitAsync(TimeSpan.FromSeconds(Options.ShimTimeoutSeconds), wait.Token);
        Log($"{Id}: armed in {sw.Elapsed.TotalMilliseconds:0} ms: QEMU in migrate-incoming, lanes to {req.PageServer} up");
        return new DestinationArmResult(Math.Round(sw.Elapsed.TotalMilliseconds, 1));
    }

    /// <summary>
    /// Asked before the source pauses: waits for the device state the source streams on the
    /// demand lane (written into QEMU as it comes), lets QEMU finish loading it and, with
    /// <see cref="DestinationLoadRequest.CommitWhenLoaded"/>, takes the commit point at once.
    /// </summary>
    public async Task<DestinationStartResult> LoadAsync(DestinationLoadRequest req, CancellationToken ct)
    {
        if (_registration is null || _domain is null || _load is null || Stage != MigrationStage.DestinationPrepared)
        {
            throw new AgentException($"destination not armed (migration {Id} is {Stage} here)");
        }

        var timeout = TimeSpan.FromSeconds(Options.DeviceStateTimeoutSeconds);
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        long length;
        try
        {
            length = await _deviceState.Task.WaitAsync(timeout, wait.Token);
        }
        catch (TimeoutException)
        {
            throw new AgentException($"no device state came from the source within {timeout.TotalSeconds:0} s (Agent:DeviceStateTimeoutSeconds)");
        }

        if (length != _load.Written)
        {
            throw new AgentException($"the device state is {_load.Written} bytes here, the source sent {length}: not loading it");
        }

        await _load.CompleteAsync(timeout, wait.Token);
        double loadMs = Stopwatch.GetElapsedTime(_deviceStateEndAt).TotalMilliseconds;
        lock (_lock)
        {
            // A restarted agent treats "loaded" as "prepared" (the copy never ran: removed), so
            // the pause does not wait for this record; a held commit (the controller resumes
            // later) journals it for whoever looks.
            var loaded = _entry! with { Stage = MigrationStage.DestinationLoaded };
            if (req.CommitWhenLoaded)
            {
                _entry = loaded;
            }
            else
            {
                Record(loaded);
            }
        }

        Log($"{Id}: device state ({length} bytes) loaded {loadMs:0.0} ms after its last byte");
        double pausedMs = Stopwatch.GetElapsedTime(_deviceStateFirstAt).TotalMilliseconds;
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
        AgentMetrics.PauseEnded(Stopwatch.GetElapsedTime(_deviceStateFirstAt).TotalMilliseconds);
        return new DestinationStartResult(0, Math.Round(loadMs, 2), _registration.QemuPid,
            Math.Round(commit.Elapsed.TotalMilliseconds - _resumeMs, 2), Math.Round(_resumeMs, 2), resumed.ResumedAtUnixMs);
    }

    private void StartPager(ShimRegistration registration, string pageServer, bool trustRamFile, bool deferPush = false)
    {
        _pager = new Pager(registration, PagesHost.ParseEndpoint(pageServer), MigrationKey, new PagerOptions
        {
            TrustRamFile = trustRamFile, DemandRealtimePriority = Options.DemandRealtimePriority, PushRealtimePriority = Options.PushRealtimePriority,
            Protection = ProtectionOf(_entry),
            DeferPush = deferPush,
        })
        {
            Log = m => Log($"{Id}: pager: {m}"),
        };
        _pagingStop = new CancellationTokenSource();
        _paging = _pager.RunAsync(_pagingStop.Token);
    }

    /// <summary>
    /// The commit point. "Committing" is journaled first: from here on nothing destroys this
    /// copy unless the source says it rolled back. The source decides (its journal is the one
    /// record of the decision) and this side resumes only on "committed". Idempotent: a
    /// controller that lost the reply asks again and gets the same answer.
    /// </summary>
    /// <param name="justLoaded">Called by the load that just saw QEMU finish: its state is known, no libvirt call needed to check it.</param>
    public async Task<ResumeResult> ResumeAsync(CancellationToken ct, bool justLoaded = false)
    {
        Task<bool> decision;
        lock (_lock)
        {
            switch (Stage)
            {
                case MigrationStage.Committed or MigrationStage.Completed:
                    return new ResumeResult(_entry!.ResumedAtUnixMs);
                case MigrationStage.RolledBack:
                    throw new AgentException($"migration {Id} rolled back: {_entry!.Note}");
                case MigrationStage.DestinationLoaded:
                    // Ask for the decision only with a copy that can take it: a destination QEMU
                    // that died after the load must roll back, not be committed to.
                    // (One call: a domain that is not active is not paused either.)
                    if (_domain is null || _paging is { IsCompleted: true } || (!justLoaded && _domain.State.State != virDomainState.VIR_DOMAIN_PAUSED))
                    {
                        throw new AgentException($"the destination copy of {Domain} is not paused with its device state loaded (its QEMU exited?): not committing");
                    }

                    Record(_entry! with { Stage = MigrationStage.Committing, SessionId = _pager?.SessionId is > 0 and var s ? s : _entry!.SessionId });
                    break;
                case MigrationStage.Committing:
                    break;
                default:
                    throw new AgentException($"migration {Id} is {Stage} here: the device state is not loaded");
            }

            decision = _decision ??= OnCommitThread();
        }

        bool committed;
        try
        {
            committed = await decision.WaitAsync(TimeSpan.FromSeconds(Options.CommitAnswerSeconds), ct);
        }
        catch (TimeoutException)
        {
            throw new AgentException($"the source has not answered whether migration {Id} may commit within {Options.CommitAnswerSeconds} s; " +
                                     "the destination stays paused and keeps asking (its agent decides when the source answers)");
        }

        if (Stage == MigrationStage.Failed)
        {
            throw new AgentException($"migration {Id} failed after the commit point: {_entry!.Note}");
        }

        return committed ? new ResumeResult(_entry!.ResumedAtUnixMs)
            : throw new AgentException($"the source rolled back migration {Id}: the destination copy was destroyed");
    }

    /// <summary>
    /// <see cref="ResolveCommit"/> on a thread of its own, in the scheduling class of the fault
    /// path (<see cref="AgentOptions.DemandRealtimePriority"/>): the question, the answer and the
    /// resume are the end of the pause, and on a host whose CPUs run guests a thread-pool thread
    /// waits for its time slice (seen: 10 ms from the load's end to the source's decision).
    /// </summary>
    private Task<bool> OnCommitThread()
    {
        var decided = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        new Thread(() =>
        {
            ThreadScheduling.PreferForLatency(Options.DemandRealtimePriority);
            try
            {
                decided.TrySetResult(ResolveCommit());
            }
            catch (Exception e)
            {
                decided.TrySetException(e);
            }
        }) { IsBackground = true, Name = "commit" }.Start();
        return decided.Task;
    }

    /// <summary>Asks the source until it answers, then resumes (committed) or destroys this copy (rolled back).</summary>
    private bool ResolveCommit()
    {
        var source = PagesHost.ParseEndpoint(_entry!.PageServer!);
        int attempt = 0;
        while (true)
        {
            _stop.Token.ThrowIfCancellationRequested();
            try
            {
                // On the control lane the pager holds open (a fresh one after a restart or a lost answer).
                var answer = _pager is { } pager
                    ? pager.AskCommit(3000)
                    : SourceControl.AskCommit(source, MigrationKey, ProtectionOf(_entry), _entry.SessionId, 3000);
                if (answer == CommitDecision.Committed)
                {
                    ApplyCommit();
                    return true;
                }

                lock (_lock)
                {
                    Record(_entry with { Stage = MigrationStage.RolledBack, Note = "the source rolled back before committing" });
                }

                DestroyCopy();
                Dispose();
                return false;
            }
            catch (IOException e)
            {
                if (attempt++ % 10 == 0)
                {
                    Log($"{Id}: commit decision: {e.Message}; asking again");
                }

                _stop.Token.WaitHandle.WaitOne(Math.Min(2000, 100 * attempt));
            }
        }
    }

    private void ApplyCommit()
    {
        var resume = Stopwatch.StartNew();
        if (_domain is not null && TryResumeAtOnce())
        {
            _resumeMs = resume.Elapsed.TotalMilliseconds;
            long at = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            _pager?.StartPush();
            lock (_lock)
            {
                Record(_entry! with { Stage = MigrationStage.Committed, ResumedAtUnixMs = at });
            }

            Log($"{Id}: committed: {Domain} runs here (resumed in {_resumeMs:0.0} ms)");
            var load = _load;
            _ = Task.Run(() => load?.Disarm());
            StartCompletion();
            return;
        }

        _conn ??= Connection.Open(Options.LibvirtUri);
        _domain ??= _conn.TryLookupDomain(Domain);
        if (_domain is null || !_domain.IsActive)
        {
            // Between the question and this line the QEMU died: the source holds the frozen RAM
            // and will not resume (it committed). An operator's case; say so everywhere.
            lock (_lock)
            {
                Record(_entry! with { Stage = MigrationStage.Failed, Note = "the destination QEMU exited after the source committed: the source keeps its paused copy and frozen RAM; nothing resumes it by itself" });
            }

            Log($"{Id}: {_entry!.Note}");
            return;
        }

        if (_domain.State.State == virDomainState.VIR_DOMAIN_PAUSED)
        {
            _domain.Resume();
        }

        _pager?.StartPush();

        long resumedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        lock (_lock)
        {
            Record(_entry! with { Stage = MigrationStage.Committed, ResumedAtUnixMs = resumedAt });
        }

        Log($"{Id}: committed: {Domain} runs here");
        StartCompletion();
    }

    /// <summary>
    /// The resume, first of all, on the handle the load used: one libvirt call (QMP 'cont') in
    /// the pause. False when it failed (the checks below say why: QEMU gone, already running).
    /// </summary>
    private bool TryResumeAtOnce()
    {
        try
        {
            _domain!.Resume();
            return true;
        }
        catch (LibvirtException e)
        {
            Log($"{Id}: resume: {e.LibvirtMessage}; checking the domain");
            return false;
        }
    }

    /// <summary>After the commit point: when every page is in, finish here and release the source, controller or not.</summary>
    private void StartCompletion()
    {
        lock (_lock)
        {
            _completion ??= Task.Run(CompleteAsync);
        }
    }

    private async Task CompleteAsync()
    {
        var paging = _paging ?? throw new AgentException("no pager");
        PagerCounters stats;
        try
        {
            stats = await paging;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            lock (_lock)
            {
                Record(_entry! with { Stage = MigrationStage.Failed, Note = $"pager failed: {e.Message}" });
            }

            throw;
        }

        if (_stop.IsCancellationRequested)
        {
            return; // the agent stops; the next one takes over
        }

        var status = LiveStatus(done: true);
        if (stats.Outcome != InstallOutcome.Completed)
        {
            lock (_lock)
            {
                Record(_entry! with { Stage = MigrationStage.Failed, Note = $"pager ended with {stats.Outcome} (the destination QEMU exited?)" });
            }

            _final = status with { Stage = nameof(MigrationStage.Failed) };
            AgentMetrics.DestinationFinished(_final.Pages);
            return;
        }

        if (!string.IsNullOrEmpty(_entry!.PersistentXml))
        {
            // Defining the same name and UUID makes the running transient domain persistent,
            // with the source's own configuration (no -incoming, no shim) for its next boot.
            using var defined = _conn!.DefineDomain(_entry.PersistentXml);
        }

        var final = status with { Stage = nameof(MigrationStage.Completed) };
        lock (_lock)
        {
            Record(_entry with { Stage = MigrationStage.Completed, Result = JsonSerializer.SerializeToNode(final, ControlChannel.Json)!.AsObject() });
        }

        // Everything of ours on this host goes before anyone hears "done" (work dir, shim socket).
        Dispose();
        _final = final;
        AgentMetrics.DestinationFinished(final.Pages);
        Log($"{Id}: complete: {status.Pages.DonePages} pages, {status.Pages.Faults} faults");
        _release = Task.Run(ReleaseSource);
        await _release;
    }

    /// <summary>Nothing of this migration is left to do here: ended, cleaned up, the source told (or given up on).</summary>
    public bool Settled => Stage.IsFinal() && _completion is null or { IsCompleted: true } && _release is null or { IsCompleted: true };

    /// <summary>Tells the source every page is in (it then destroys its copy); retried, for at most <see cref="AgentOptions.SourceReleaseSeconds"/>.</summary>
    private void ReleaseSource()
    {
        var deadline = DateTime.UtcNow.AddSeconds(Options.SourceReleaseSeconds);
        var source = PagesHost.ParseEndpoint(_entry!.PageServer!);
        int attempt = 0;
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                SourceControl.ReportDone(source, MigrationKey, ProtectionOf(_entry), _entry.SessionId, 3000);
                lock (_lock)
                {
                    Record(_entry with { SourceReleased = true });
                }

                Log($"{Id}: the source was told to remove its copy");
                return;
            }
            catch (IOException e)
            {
                if (DateTime.UtcNow > deadline)
                {
                    Lines.Warning($"{Id}: could not tell the source that every page is in ({e.Message}); its paused copy stays until 'guidecopy job {Id}' or its agent is asked");
                    return;
                }

                if (attempt++ % 10 == 0)
                {
                    Log($"{Id}: releasing the source: {e.Message}; trying again");
                }

                _stop.Token.WaitHandle.WaitOne(Math.Min(5000, 200 * attempt));
            }
        }
    }

    /// <summary>
    /// A starting agent finds this migration in its journal. Before "committing" the copy never
    /// ran: it is removed. From "committing" on the shim keeps its copy of the uffd (the VM
    /// stalls instead of reading zeros) and connects again to the same socket; the pager
    /// rebuilds its bitmap from the pages already in the RAM file, the decision is asked again
    /// if it was not heard, and the source's page server resumes the push from there.
    /// </summary>
    public static DestinationSide? Recover(AgentOptions options, byte[] secret, MigrationJournal journal, JournalEntry entry, AgentLog log)
    {
        var side = new DestinationSide(options, secret, entry.Id, journal, log) { _entry = entry };
        side.AdoptWorkDir();
        switch (entry.Stage)
        {
            case MigrationStage.DestinationPrepared or MigrationStage.DestinationLoaded:
                log.Info($"{entry.Id}: found a migration of {entry.Domain} that never committed: removing its paused copy");
                side.DestroyCopy();
                side.Record(entry with { Stage = MigrationStage.RolledBack, Note = "the destination agent restarted before the commit point" });
                side.Dispose();
                return null;
            case MigrationStage.Committing or MigrationStage.Committed:
                side._conn = Connection.Open(options.LibvirtUri);
                // The shim connects again to the path it was started with: the domain's own directory.
                using (var running = side._conn.LookupDomain(entry.Domain))
                {
                    side._domainDir = side.Work.DomainDir(running.Uuid);
                }

                side._shim = new ShimListener(Path.Combine(side._domainDir, "shim.sock"), DomainShimRules.For(options, side.Qemu, entry.Domain))
                {
                    Rejected = m => log.Info($"{entry.Id}: refused a shim: {m}"),
                };
                side._recovery = Task.Run(async () =>
                {
                    var registration = await side._shim.AcceptAsync(side._stop.Token);
                    side._registration = registration;
                    side.StartPager(registration, entry.PageServer!, trustRamFile: true);
                    log.Info($"{entry.Id}: recovered after an agent restart: the shim handed its uffd again (QEMU pid {registration.QemuPid})");
                    if (entry.Stage == MigrationStage.Committing)
                    {
                        lock (side._lock)
                        {
                            side._decision ??= side.OnCommitThread();
                        }
                    }
                    else
                    {
                        side.StartCompletion();
                    }
                });
                log.Info($"{entry.Id}: found a {entry.Stage} migration of {entry.Domain}; waiting for its shim to reconnect");
                return side;
            case MigrationStage.Completed when !entry.SourceReleased:
                side._release = Task.Run(side.ReleaseSource);
                return side;
            default:
                return null;
        }
    }

    public DestinationStatus Status()
    {
        if (_final is { } final)
        {
            return final;
        }

        if (Stage.IsFinal() && _completion is null)
        {
            return _entry!.Result?.Deserialize<DestinationStatus>(ControlChannel.Json) is { } kept
                ? kept with { Done = Stage == MigrationStage.Completed, Stage = Stage.ToString(), Note = _entry.Note, ResumedAtUnixMs = _entry.ResumedAtUnixMs }
                : Empty(Stage == MigrationStage.Completed);
        }

        if (_pager is null)
        {
            // Recovering (the shim has not reconnected yet; the VM waits in its faults) or not loaded yet.
            return Empty(false);
        }

        if (_paging is { IsFaulted: true })
        {
            throw new AgentException($"pager failed: {_paging.Exception!.InnerException!.Message}");
        }

        return LiveStatus(done: false);
    }

    private DestinationStatus Empty(bool done) => new(done, Stage.ToString(), default, _entry?.Note, _entry?.ResumedAtUnixMs ?? 0);

    private DestinationStatus LiveStatus(bool done) => new(done, Stage.ToString(), _pager!.Counters, _entry?.Note, _entry?.ResumedAtUnixMs ?? 0);

    /// <summary>The controller's wait for the end: returns once this side completed (or failed) on its own.</summary>
    public async Task<DestinationStatus> FinishAsync(CancellationToken ct)
    {
        if (_recovery is not null)
        {
            await _recovery.WaitAsync(ct);
        }

        if (_completion is null && !Stage.IsFinal())
        {
            throw new AgentException($"migration {Id} is {Stage} here: not committed");
        }

        if (_completion is not null)
        {
            await _completion.WaitAsync(ct);
        }

        return Status();
    }

    /// <summary>
    /// Rollback: destroy the transient destination QEMU (it never ran the guest) and clean up.
    /// Refused from "committing" on: only the source's decision can undo that.
    /// </summary>
    public void Abort(string why, bool sourceRolledBack = false)
    {
        lock (_lock)
        {
            if (Stage == MigrationStage.Committing && sourceRolledBack)
            {
                // The source said "rolled back": it can never say "committed" to our question.
                _stop.Cancel();
            }
            else if (Stage is MigrationStage.Committing or MigrationStage.Committed or MigrationStage.Completed)
            {
                throw new AgentException($"migration {Id} is {Stage} on the destination: it is not destroyed here (the source decides; 'guidecopy abort' asks it first)");
            }

            if (_entry is not null && Stage != MigrationStage.RolledBack)
            {
                Record(_entry with { Stage = MigrationStage.RolledBack, Note = why });
            }
        }

        DestroyCopy();
        Log($"{Id}: destination aborted ({why})");
        Dispose();
    }

    /// <summary>Destroys this migration's copy: a transient domain that never ran the guest (paused in -incoming).</summary>
    private void DestroyCopy()
    {
        try
        {
            _conn ??= Connection.Open(Options.LibvirtUri);
            var dom = _domain ?? (Domain.Length > 0 ? _conn.TryLookupDomain(Domain) : null);
            if (dom is { IsActive: true } && !dom.IsPersistent && dom.State.State != virDomainState.VIR_DOMAIN_RUNNING)
            {
                dom.Destroy();
            }
            else if (dom is null && _registration is not null)
            {
                // create may still be pending; the QEMU it started is found by its pid.
                try { Process.GetProcessById(_registration.QemuPid).Kill(); } catch (ArgumentException) { }
            }

            if (!ReferenceEquals(dom, _domain))
            {
                dom?.Dispose();
            }
        }
        catch (LibvirtException e)
        {
            Log($"{Id}: abort: {e.LibvirtMessage}");
        }
    }

    /// <summary>
    /// The agent stops. From "committing" on the migration goes on in the next agent (the shim
    /// holds the uffd meanwhile); before, the copy that never ran is removed.
    /// </summary>
    public void Shutdown()
    {
        _stop.Cancel();
        if (Stage is MigrationStage.Committing or MigrationStage.Committed or MigrationStage.Completed or MigrationStage.RolledBack or MigrationStage.Failed)
        {
            if (Stage is MigrationStage.Committing or MigrationStage.Committed)
            {
                Log($"{Id}: agent stopping mid-transfer; the next agent takes the migration over from the journal");
            }

            Dispose();
            return;
        }

        try
        {
            Abort("the destination agent stopped before the commit point");
        }
        catch (AgentException e)
        {
            Log(e.Message);
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
        _deviceState.TrySetException(new AgentException($"migration {Id} ended here before its device state came"));
        _load?.Dispose();
        _load = null;
        _pagingStop?.Cancel();
        _pager?.Dispose();
        _registration?.Dispose();
        _registration = null;
        _shim?.Dispose();
        _shim = null;
        _domain?.Dispose();
        _domain = null;
        _conn?.Dispose();
        _conn = null;
        if (Stage is MigrationStage.Committing or MigrationStage.Committed)
        {
            return; // the work dir (shim socket) is the next agent's
        }

        RemoveWorkDir();
    }
}
