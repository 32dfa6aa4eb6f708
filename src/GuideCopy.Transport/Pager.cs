using System.Diagnostics;
using System.Net;
using GuideCopy.MemoryPlane;
using GuideCopy.Interop;

namespace GuideCopy.Transport;

/// <summary>
/// Destination side: owns a uffd handed by the shim and fills it from a <see cref="PageServer"/>.
/// Faults go out on the demand lane; pushed pages come in on the push lane; either lane that
/// breaks (link down, source restart) is reconnected, the push lane resuming from our
/// installed bitmap and the demand lane re-asking for every page a fault still waits on.
/// <see cref="RunAsync"/> ends when every page is installed (uffd released: QEMU runs on plain
/// memory) or the faulting process exits.
/// </summary>
/// <remarks>
/// This type owns the pager's lifetime and its threads. Each lane's thread is a
/// <see cref="LaneKeeper"/> (connect, reconnect, read), whose frames <see cref="ReceivedFrames"/>
/// acts on; the fault thread's requests go out through <see cref="DemandRequests"/>. What they
/// share is in <see cref="SourceLanes"/>.
/// </remarks>
public sealed class Pager : IDemandSink, IDisposable
{
    private readonly ShimRegistration _reg;
    private readonly PagerOptions _options;
    private readonly SourceLanes _lanes;
    private readonly DeviceStateStream _deviceState = new();
    private readonly DemandRequests _requests;
    private readonly Stopwatch _clock = new();
    private readonly WarmPages _warm;
    private PageInstaller? _installer;
    private LaneKeeper? _demandKeeper, _pushKeeper;
    private long _presentAtStart;
    private InstallOutcome? _outcome;
    private readonly ManualResetEventSlim _pushAllowed = new(false);
    private readonly TaskCompletionSource _lanesUp = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <param name="key">The migration's key (<see cref="LaneKeys.ForMigration"/>), the page server's too.</param>
    public Pager(ShimRegistration registration, EndPoint sourceEndpoint, byte[] key, PagerOptions? options = null)
    {
        _reg = registration;
        _options = options ?? new PagerOptions();
        _lanes = new SourceLanes(registration, sourceEndpoint, key, _options);
        _requests = new DemandRequests(_lanes);
        _warm = new WarmPages(registration.PageCount, registration.PageSize);
    }

    /// <summary>The page server's session, from the first handshake; every later lane must be the same session.</summary>
    public ulong SessionId => _lanes.SessionId;

    /// <summary>Lanes dropped because the source broke the protocol (each reconnected, nothing of them installed).</summary>
    public int LaneErrors => _lanes.LaneErrors;

    /// <summary>Diagnostics (reconnects, errors). Called from pager threads.</summary>
    public Action<string>? Log { get => _lanes.Log; set => _lanes.Log = value; }

    /// <summary>
    /// A piece of the device state, as the source streams it on the demand lane while paused
    /// (<see cref="FrameType.DeviceState"/>); called on the demand lane's thread, in order.
    /// </summary>
    public DeviceStateSink? DeviceStateReceived { get => _deviceState.Received; set => _deviceState.Received = value; }

    /// <summary>The device state is whole (its length in bytes, as the source counted it).</summary>
    public Action<long>? DeviceStateEnded { get => _deviceState.Ended; set => _deviceState.Ended = value; }

    public delegate void DeviceStateSink(ReadOnlySpan<byte> bytes);

    /// <summary>
    /// Completes once the demand lane (which carries the device state) and a control lane (for
    /// the commit question) are authenticated: what the destination prepares before the pause.
    /// </summary>
    public Task LanesUp => _lanesUp.Task;

    /// <summary>What this pager did so far; the live view while it runs, the final figures after.</summary>
    public PagerCounters Counters => PagerCounters.From(_installer, _outcome, _lanes, _clock, _warm);

    public async Task<PagerCounters> RunAsync(CancellationToken ct = default)
    {
        _clock.Start();
        // QEMU may go on now: faults it raises wait in the uffd queue until the fault thread runs.
        _reg.Ack();
        using var reg = ct.Register(() => { _lanes.Stop(); _lanes.DemandLane?.Dispose(); _lanes.PushLane?.Dispose(); _installer?.Stop(); });

        // The zero map comes on the demand lane when the source has it (at once from a frozen
        // file, after the freeze from an armed server): until then faults go to the source.
        await Task.Run(ConnectDemandFirst, ct).ConfigureAwait(false);
        var installer = new PageInstaller(_reg, new PageBitmap(_reg.PageCount)) { FaultThreadRealtimePriority = _options.DemandRealtimePriority };
        if (_reg.IsResend || _options.TrustRamFile)
        {
            long present = installer.MarkPresentFromRamFile();
            Interlocked.Exchange(ref _presentAtStart, Math.Max(0, present));
            Log?.Invoke(present < 0 ? $"cannot open {_reg.RamPath} to rebuild the bitmap; every page will be fetched again"
                                    : $"resuming: {present} pages already in {_reg.RamPath}");
        }
        _installer = installer;
        _demandKeeper = new LaneKeeper(Lane.Demand, _lanes, installer, _deviceState, _requests, _warm);
        _pushKeeper = new LaneKeeper(Lane.Push, _lanes, installer, _deviceState, _requests, _warm);
        installer.Start(this);
        if (_lanes.Stopped) installer.Stop();

        var threads = new[]
        {
            new Thread(DemandLoop) { IsBackground = true, Name = "pager-demand" },
            new Thread(PushLoop) { IsBackground = true, Name = "pager-push" },
            new Thread(HeartbeatLoop) { IsBackground = true, Name = "pager-heartbeat" },
        };
        foreach (var t in threads) t.Start();
        _ = Task.Run(ConnectControlLane, CancellationToken.None);
        try
        {
            _outcome = await installer.Completion.ConfigureAwait(false);
        }
        finally
        {
            _lanes.Stop();
            _lanes.DemandLane?.Dispose();
            _lanes.PushLane?.Dispose();
            foreach (var t in threads) t.Join(2000);
            _clock.Stop();
        }
        return Counters;
    }

    private void ConnectDemandFirst()
    {
        while (true)
        {
            if (_lanes.Stopped) throw new OperationCanceledException();
            var lane = _lanes.TryConnect(Lane.Demand);
            if (lane is null) { Thread.Sleep(_options.ReconnectDelayMs); continue; }
            _lanes.DemandLane = lane;
            return;
        }
    }

    /// <summary>
    /// One control lane held open from the start (heartbeated like the demand lane), so the commit
    /// question, asked while the VM is paused, costs one round trip, not a connect and a handshake.
    /// </summary>
    private void ConnectControlLane()
    {
        while (!_lanes.Stopped && _lanes.ControlLane is null)
        {
            try
            {
                _lanes.ControlLane = SourceControl.OpenLane(_lanes.Source, _lanes.Key, _options.Protection, SessionId, _options.LinkTimeoutMs);
            }
            catch (IOException e)
            {
                if (e is ProtocolException or AuthenticationFailedException) Log?.Invoke($"control lane refused: {e.Message}");
                Thread.Sleep(_options.ReconnectDelayMs);
            }
        }
        if (_lanes.DemandLane is not null) _lanesUp.TrySetResult();
    }

    /// <summary>
    /// The commit question (<see cref="SourceControl.AskCommit"/>) on the lane held open, or on a
    /// fresh one if that lane is gone. Throws IOException when no answer came (ask again).
    /// </summary>
    public CommitDecision AskCommit(int timeoutMs)
    {
        var lane = _lanes.TakeControlLane();
        if (lane is not null && !lane.IsDisposed)
        {
            try
            {
                // Closed once answered: unread, the source's heartbeats would fill its buffer.
                using (lane) return SourceControl.AskCommit(lane);
            }
            catch (IOException) when (!_lanes.Stopped)
            {
                lane.Dispose(); // asked again below, on a lane of its own
            }
        }
        return SourceControl.AskCommit(_lanes.Source, _lanes.Key, _options.Protection, SessionId, timeoutMs);
    }

    private void DemandLoop()
    {
        // The page a vCPU waits for arrives here, while the push lane's thread installs a stream:
        // this one must not wait for that one's time slice.
        string? applied = ThreadScheduling.PreferForLatency(_options.DemandRealtimePriority);
        if (_options.DemandRealtimePriority > 0)
            Log?.Invoke($"demand threads: {applied ?? "priority refused, fair class"}");
        _demandKeeper!.Run();
    }

    /// <summary>The VM runs: open the push lane (<see cref="PagerOptions.DeferPush"/>).</summary>
    public void StartPush() => _pushAllowed.Set();

    private void PushLoop()
    {
        if (_options.DeferPush)
            while (!_lanes.Stopped && !_pushAllowed.Wait(100)) { }
        // Warm pages held: the resume bitmap must say which are good, so the verdict comes first
        // (the source sends it right after the pause; a fault meanwhile goes to the source).
        while (!_lanes.Stopped && !_warm.VerdictKnown) Thread.Sleep(1);
        _warm.StartInstalls();
        if (_options.PushRealtimePriority > 0)
            Log?.Invoke($"push receiver: {ThreadScheduling.PreferForLatency(_options.PushRealtimePriority) ?? "priority refused, fair class"}");
        _pushKeeper!.Run();
    }

    /// <summary>Fault thread: ask the source for these pages on the demand lane.</summary>
    public void RequestPages(ReadOnlySpan<long> pages) => _requests.Send(pages);

    private void HeartbeatLoop()
    {
        while (!_lanes.Stopped)
        {
            Thread.Sleep(_options.HeartbeatMs / 2);
            var lane = _lanes.DemandLane;
            try { lane?.HeartbeatIfIdle(_options.HeartbeatMs); }
            catch (IOException) { lane?.Dispose(); }
            var control = _lanes.ControlLane;
            try { control?.HeartbeatIfIdle(_options.HeartbeatMs); }
            catch (IOException) { control?.Dispose(); }
        }
    }

    public void Dispose()
    {
        _lanes.Stop();
        _pushAllowed.Set();
        _lanes.ControlLane?.Dispose();
        _lanes.DemandLane?.Dispose();
        _lanes.PushLane?.Dispose();
        _installer?.Stop();
        _warm.Dispose();
    }
}
