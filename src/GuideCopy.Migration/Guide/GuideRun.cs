using System.Diagnostics;
using GuideCopy.MemoryPlane;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Definitions;
using GuideCopy.Migration.Host;
using GuideCopy.Transport;
using LibvirtSharp;
using LibvirtSharp.Native;
using GuideCopy.Interop;

namespace GuideCopy.Migration.Guide;

/// <summary>
/// The guide on the source host (docs/ARCHITECTURE.md steps 4 and 6): a transient clone of the paused
/// domain, RAM a fresh file behind the shim, faults served from the frozen source RAM by
/// <see cref="GuideMemory"/>, fed the same device state and resumed. A control loop stops it
/// when it stops predicting the destination, has nothing left to say, or runs out of time.
/// </summary>
public sealed class GuideRun : IDisposable
{
    private readonly AgentOptions _options;
    private readonly string _workDir;
    private readonly MigrationWorkDir _work;
    private readonly QemuUser _qemu;
    private readonly string _id;
    private readonly Action<string> _log;
    private readonly Stopwatch _clock = new();
    private Connection? _conn;
    private LibvirtSharp.Domain? _domain;
    private ShimListener? _shim;
    private ShimRegistration? _registration;
    private FrozenRam? _ram;
    private GuideMemory? _memory;
    private PageInstaller? _installer;
    private GuideOptions _control = new();
    private PageServer? _server;
    private Timer? _timer;
    private double _startMs;
    private string? _guideDir;
    private int _qemuPid;
    private long _demand, _misses, _late;
    private readonly MissWindows _missWindows = new();
    private Func<long, bool>? _touchedNow;
    private long _windowStart;
    private long _lateInFlight;
    private readonly FaultHistogram _lateAge = new();

    /// <summary>Windows the guide runs before the outrun rule may stop it.</summary>
    private const int OutrunGraceWindows = 3;
    private GuideStats? _final;
    private readonly object _stopLock = new();

    public GuideRun(AgentOptions options, MigrationWorkDir work, QemuUser qemu, string migrationId, Action<string> log)
    {
        _options = options;
        _work = work;
        _qemu = qemu;
        _workDir = work.Path;
        _id = migrationId;
        _log = log;
    }

    public bool Running => _domain is not null && _final is null;

    private Task _prepared = Task.CompletedTask;
    private bool _prepareBegun, _startRefused, _starting;

    /// <summary>
    /// Starts <see cref="PrepareAsync"/> on a thread of its own, once, unless the guide was stopped
    /// or kept from starting already.
    /// </summary>
    public Task BeginPrepare(string migratableXml, string domainName)
    {
        lock (_stopLock)
        {
            if (!_prepareBegun && !_startRefused && _final is null)
            {
                _prepareBegun = true;
                _prepared = Task.Run(() => PrepareAsync(migratableXml, domainName, CancellationToken.None));
            }

            return _prepared;
        }
    }

    /// <summary>The guide's QEMU started paused (faults if it could not start).</summary>
    public Task Prepared
    {
        get { lock (_stopLock) return _prepared; }
    }

    /// <summary>
    /// Keeps a guide that has not started yet from starting (the migration ends or rolls back
    /// first); false when its start has already begun, which the caller must then wait for.
    /// </summary>
    public bool RefuseStart()
    {
        lock (_stopLock)
        {
            if (_starting) return false;
            _startRefused = true;
            return true;
        }
    }

    /// <summary>Before the source pauses: the guide QEMU, paused with -incoming defer, its uffd taken.</summary>
    public async Task PrepareAsync(string migratableXml, string domainName, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        // The guide is a domain of its own: its UUID is chosen here so that its sockets can be in
        // its own directory (its AppArmor profile's name) before libvirt starts it.
        string uuid = Guid.NewGuid().ToString("D");
        _guideDir = _work.CreateDomainDir(uuid, _qemu);
        string shimSocket = Path.Combine(_guideDir, "guide-shim.sock");
        _shim = new ShimListener(shimSocket, DomainShimRules.For(_options, _qemu, GuideName(domainName)))
        {
            Rejected = m => _log($"{_id}: guide: refused a shim: {m}"),
        };
        _conn = Connection.Open(_options.LibvirtUri);
        (_domain, _registration) = await IncomingQemu.StartPausedAsync(_conn, migratableXml,
            xml => GuideXml.From(xml, GuideName(domainName), uuid, Path.Combine(_workDir, "guide-console.log"), new GuideDisks(_workDir, _qemu).BlankFor),
            _options, shimSocket, _shim, "guide", ct);
        _qemuPid = _registration.QemuPid;
        // The guide is a helper: where it shares CPUs with VMs (the source host's other guests) and
        // with the page server answering the destination's demand faults, it must only use what
        // they leave idle, or it would slow the very VM it is meant to speed up. SCHED_IDLE gives
        // exactly that (a waking page-server thread preempts it at once); nice alone did not
        // (docs/tuning.md, "The guide's QEMU under SCHED_IDLE").
        int threads = ProcessPriority.SetNice(_qemuPid, _options.GuideNice);
        string policy = $"nice {_options.GuideNice}";
        if (_options.GuideCpuPolicy == GuideCpuPolicy.Idle)
        {
            threads = ProcessPriority.SetIdlePolicy(_qemuPid);
            policy = "SCHED_IDLE";
        }

        _startMs = sw.Elapsed.TotalMilliseconds;
        _log($"{_id}: guide {GuideName(domainName)} (pid {_qemuPid}) started paused in {_startMs:0} ms ({policy} on {threads} threads)");
    }

    public static string GuideName(string domainName) => domainName + "-guide";

    /// <summary>
    /// After the source paused and saved its device state: serve the guide's faults from the
    /// frozen RAM, load the same device state, resume it, start the control loop.
    /// </summary>
    public async Task StartAsync(string frozenRamPath, PageServer server, byte[] deviceState, GuideOptions control, CancellationToken ct)
    {
        lock (_stopLock)
        {
            if (_startRefused || _final is not null) return;
            _starting = true;
        }

        if (_registration is null || _domain is null)
        {
            throw new AgentException("guide not prepared");
        }

        _control = control;
        _server = server;
        _ram = new FrozenRam(frozenRamPath, _registration.PageSize);
        _memory = new GuideMemory(_ram, server, control.ReadAheadPages);
        // The guide runs ahead only if its faults cost less than the destination's: its fault
        // thread must not wait behind the push for a time slice either.
        _installer = new PageInstaller(_registration, _ram.ZeroPages) { FaultThreadRealtimePriority = _options.DemandRealtimePriority };
        _memory.Attach(_installer);
        _touchedNow = _memory.Log.Touched.IsSet;
        _installer.Start(_memory);
        server.PushLead = control.LeadPagesFor(server.BandwidthBytesPerSecond);
        server.DemandObserved = OnDemand;
        await DeviceStateTransfer.LoadAsync(_domain, Path.Combine(_guideDir!, "guide-incoming.sock"), deviceState,
            TimeSpan.FromSeconds(_options.DeviceStateTimeoutSeconds), ct);
        _domain.Resume();
        _clock.Start();
        _windowStart = Stopwatch.GetTimestamp();
        _timer = new Timer(_ => Control(), null, 250, 250);
        _log($"{_id}: guide running");
    }

    /// <summary>From the page server's demand thread: where the guide logged this page, or -1 if it never touched it.</summary>
    private long OnDemand(long page, bool alreadySent)
    {
        if (_final is not null || _memory is null)
        {
            return -1;
        }

        Interlocked.Increment(ref _demand);
        long position = _memory.Log.PositionOf(page);
        _missWindows.Record(page, position >= 0);
        if (position < 0)
        {
            Interlocked.Increment(ref _misses);
            return -1;
        }

        // The guide had touched it, but the push had not delivered it before the fault.
        Interlocked.Increment(ref _late);
        _lateAge.RecordTicks(Stopwatch.GetTimestamp() - _memory.Log.TicksAt(position));
        if (alreadySent) Interlocked.Increment(ref _lateInFlight);
        return position;
    }

    private void Control()
    {
        if (_final is not null || _memory is null)
        {
            return;
        }

        double runtime = _clock.Elapsed.TotalSeconds;
        if (runtime > _control.TimeLimitSeconds)
        {
            Stop($"time limit ({_control.TimeLimitSeconds:0} s)");
            return;
        }

        long last = _memory.Log.LastTouchTicks;
        double idle = last == 0 ? runtime : Stopwatch.GetElapsedTime(last).TotalSeconds;
        if (idle > _control.IdleSeconds && runtime > _control.IdleSeconds)
        {
            Stop($"nothing left to say (no new page for {_control.IdleSeconds:0} s)");
            return;
        }

        if (Stopwatch.GetElapsedTime(_windowStart).TotalSeconds >= _control.MissWindowSeconds)
        {
            // Judged a window late (MissWindows): pages the guide touches soon after the fault were
            // only late, not unpredicted.
            var (demand, misses) = _missWindows.CloseWindow(_touchedNow!);
            // Outrun is judged on the whole run so far, and only after a few windows: at the start
            // every VM outruns the push while it fetches its working set at once (docs/tuning.md,
            // "Outrun is judged only after a few windows").
            long pushed = _server?.Counters.PushPages ?? 0, skipped = _server?.PushSkipped ?? 0;
            bool judgeOutrun = runtime >= OutrunGraceWindows * _control.MissWindowSeconds;
            _windowStart = Stopwatch.GetTimestamp();
            if (misses >= _control.MinMisses && misses >= _control.MissShare * demand)
            {
                Stop($"stopped predicting ({misses} of {demand} demand pages in a {_control.MissWindowSeconds:0} s window were still not touched by the guide a window later)");
            }
            else if (judgeOutrun && _control.OutrunRatio > 0 && skipped >= _control.MinMisses && skipped > _control.OutrunRatio * pushed)
            {
                // The destination faults on the guide's pages faster than the push can send them
                // (it is link-bound, e.g. a VM touching its whole RAM at random): ordering cannot
                // help, and from here on every fault's neighbours are pushed first, as with --guide off.
                Stop($"outrun by the destination ({skipped} guide pages overtaken vs {pushed} pushed in {runtime:0} s)");
            }
        }
    }

    /// <summary>Stops and destroys the guide (idempotent); its figures stay for the report.</summary>
    public GuideStats Stop(string reason)
    {
        lock (_stopLock)
        {
            if (_final is not null)
            {
                return _final;
            }

            _timer?.Dispose();
            double cpu = CpuSeconds(_qemuPid);
            _final = new GuideStats
            {
                PagesLogged = _memory?.Log.Count ?? 0,
                DemandDuringGuide = Interlocked.Read(ref _demand),
                Misses = Interlocked.Read(ref _misses),
                LatePushes = Interlocked.Read(ref _late),
                RuntimeSeconds = Math.Round(_clock.Elapsed.TotalSeconds, 3),
                CpuSeconds = cpu,
                StopReason = reason,
                StartMs = Math.Round(_startMs, 1),
                PushSkipped = _server?.PushSkipped ?? 0,
                LateInFlight = Interlocked.Read(ref _lateInFlight),
                LateLeadP50Ms = _lateAge.Count > 0 ? Math.Round(_lateAge.Percentile(0.5).TotalMilliseconds, 2) : null,
                Overtaken = _server?.PushOvertaken ?? 0,
            };
            // The figures are final; the guide's QEMU goes on a thread of its own: a libvirt destroy
            // can take seconds, and this is the path from the last page to the source's release.
            _startRefused = true;
            var prepared = _prepared;
            _destroyed = Task.Run(() =>
            {
                try
                {
                    // A prepare under way would create the QEMU after this destroy: let it end first
                    // (bounded by the shim's timeout; a prepare that failed leaves no domain).
                    try { prepared.Wait(TimeSpan.FromSeconds(_options.ShimTimeoutSeconds + 30)); }
                    catch (AggregateException) { }
                    if (_domain is { IsActive: true })
                    {
                        _domain.Destroy();
                    }
                }
                catch (LibvirtException e)
                {
                    _log($"{_id}: guide destroy: {e.LibvirtMessage}");
                }

                Release();
            });
            _log($"{_id}: guide stopped: {reason}; {_final.PagesLogged} pages logged, cpu {cpu:0.00} s; late pushes {_late} " +
                 $"({_lateInFlight} in flight, {_final.Overtaken} ahead of the push), " +
                 $"logged before the fault by p10 {_lateAge.Percentile(0.1).TotalMilliseconds:0.0} p50 {_lateAge.Percentile(0.5).TotalMilliseconds:0.0} p90 {_lateAge.Percentile(0.9).TotalMilliseconds:0.0} ms");
            return _final;
        }
    }

    public GuideStats? Final => _final;

    private Task _destroyed = Task.CompletedTask;

    /// <summary>Waits (bounded) until the guide's QEMU is gone: before its work dir goes, or the agent exits.</summary>
    public void WaitDestroyed(TimeSpan patience) => _destroyed.Wait(patience);

    /// <summary>utime + stime of the guide's QEMU from /proc/PID/stat (clock ticks of 1/100 s).</summary>
    private static double CpuSeconds(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // fields[0] is field 3 (state): utime is field 14, stime 15.
            return (long.Parse(fields[11]) + long.Parse(fields[12])) / 100.0;
        }
        catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException)
        {
            return 0;
        }
    }

    private void Release()
    {
        _installer?.Stop();
        _installer?.Dispose();
        _installer = null;
        _registration?.Dispose();
        _registration = null;
        _shim?.Dispose();
        _shim = null;
        _ram?.Dispose();
        _ram = null;
        _domain?.Dispose();
        _domain = null;
        _conn?.Dispose();
        _conn = null;
    }

    public void Dispose()
    {
        Stop("migration ended");
        WaitDestroyed(TimeSpan.FromSeconds(30));
    }
}
