using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using GuideCopy.MemoryPlane;
using GuideCopy.Interop;

namespace GuideCopy.Transport;

/// <summary>Knobs of a <see cref="Pager"/>; defaults and units here.</summary>
public sealed class PagerOptions
{
    /// <summary>A lane that hears nothing (not even a heartbeat) this long is reconnected, in ms.</summary>
    public int LinkTimeoutMs { get; init; } = 3000;
    /// <summary>Idle demand lane heartbeat period, in ms.</summary>
    public int HeartbeatMs { get; init; } = 500;
    /// <summary>Pause between reconnect attempts, in ms.</summary>
    public int ReconnectDelayMs { get; init; } = 200;
    /// <summary>
    /// Trust pages already present in the destination RAM file as installed. Always done when the
    /// shim hands the uffd again (agent restart); the file must have started empty.
    /// </summary>
    public bool TrustRamFile { get; init; }
    /// <summary>
    /// SCHED_FIFO priority of the threads a fault waits on (uffd reader, demand lane), 0: fair class
    /// like the rest. See <see cref="GuideCopy.Interop.ThreadScheduling.PreferForLatency"/>.
    /// </summary>
    public int DemandRealtimePriority { get; init; }
    /// <summary>SCHED_FIFO priority of the push lane's receiver, 0: fair class.</summary>
    public int PushRealtimePriority { get; init; }
    /// <summary>Sealed (AEGIS-256, the default) or clear text; must match the page server's.</summary>
    public LaneProtection Protection { get; init; } = LaneProtection.Sealed;
    /// <summary>
    /// The push lane waits for <see cref="Pager.StartPush"/>: armed before the pause, the bulk
    /// stream would otherwise start in the middle of it and take the CPU the load, the commit and
    /// the resume need (docs/tuning.md, "The push lane waits for the resume").
    /// </summary>
    public bool DeferPush { get; init; }
}

/// <summary>
/// Destination side: owns a uffd handed by the shim and fills it from a <see cref="PageServer"/>.
/// Faults go out on the demand lane; pushed pages come in on the push lane; either lane that
/// breaks (link down, source restart) is reconnected, the push lane resuming from our
/// installed bitmap and the demand lane re-asking for every page a fault still waits on.
/// <see cref="RunAsync"/> ends when every page is installed (uffd released: QEMU runs on plain
/// memory) or the faulting process exits.
/// </summary>
public sealed class Pager : IDemandSink, IDisposable
{
    private readonly ShimRegistration _reg;
    private readonly EndPoint _source;
    private readonly byte[] _secret;
    private readonly PagerOptions _options;
    private readonly Stopwatch _clock = new();
    private PageInstaller? _installer;
    private volatile FrameConnection? _demandLane, _pushLane;
    private volatile bool _stopped;
    private int _reconnects, _laneErrors;
    private ulong _sessionId;
    private long _closedBytes, _presentAtStart;
    private InstallOutcome? _outcome;
    private volatile FrameConnection? _controlLane;
    private readonly ManualResetEventSlim _pushAllowed = new(false);
    private readonly TaskCompletionSource _lanesUp = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <param name="key">The migration's key (<see cref="LaneKeys.ForMigration"/>), the page server's too.</param>
    public Pager(ShimRegistration registration, EndPoint sourceEndpoint, byte[] key, PagerOptions? options = null)
    {
        _reg = registration;
        _source = sourceEndpoint;
        _secret = key;
        _options = options ?? new PagerOptions();
    }

    /// <summary>The page server's session, from the first handshake; every later lane must be the same session.</summary>
    public ulong SessionId => Volatile.Read(ref _sessionId);

    /// <summary>Lanes dropped because the source broke the protocol (each reconnected, nothing of them installed).</summary>
    public int LaneErrors => Volatile.Read(ref _laneErrors);

    /// <summary>Diagnostics (reconnects, errors). Called from pager threads.</summary>
    public Action<string>? Log { get; set; }

    /// <summary>
    /// A piece of the device state, as the source streams it on the demand lane while paused
    /// (<see cref="FrameType.DeviceState"/>); called on the demand lane's thread, in order.
    /// </summary>
    public DeviceStateSink? DeviceStateReceived { get; set; }

    /// <summary>The device state is whole (its length in bytes, as the source counted it).</summary>
    public Action<long>? DeviceStateEnded { get; set; }

    public delegate void DeviceStateSink(ReadOnlySpan<byte> bytes);

    /// <summary>Device-state bytes passed to <see cref="DeviceStateReceived"/> so far, and on the current demand lane.</summary>
    private long _deviceStateDelivered, _deviceStateOnLane;

    private bool _deviceStateEnded;

    /// <summary>
    /// One piece of the device state. A demand lane lost mid-stream (a cut link, a frame that
    /// failed authentication) is followed by a new one on which the source sends the state again
    /// from byte 0 (PageServer.ServeDemand): only the bytes past what QEMU already has go on.
    /// </summary>
    private void DeviceStatePiece(ReadOnlySpan<byte> piece)
    {
        long start = _deviceStateOnLane;
        _deviceStateOnLane += piece.Length;
        if (_deviceStateOnLane <= _deviceStateDelivered)
        {
            return;
        }

        var fresh = piece[(int)Math.Max(0, _deviceStateDelivered - start)..];
        _deviceStateDelivered = _deviceStateOnLane;
        DeviceStateReceived?.Invoke(fresh);
    }

    /// <summary>
    /// Completes once the demand lane (which carries the device state) and a control lane (for
    /// the commit question) are authenticated: what the destination prepares before the pause.
    /// </summary>
    public Task LanesUp => _lanesUp.Task;

    /// <summary>What this pager did so far; the live view while it runs, the final figures after.</summary>
    public PagerCounters Counters
    {
        get
        {
            var i = _installer;
            var lanes = new PagerCounters
            {
                Outcome = _outcome,
                PageCount = _reg.PageCount,
                BytesReceived = Interlocked.Read(ref _closedBytes) + (_demandLane?.BytesReceived ?? 0) + (_pushLane?.BytesReceived ?? 0),
                Reconnects = _reconnects,
                LaneErrors = LaneErrors,
                ElapsedMs = _clock.Elapsed.TotalMilliseconds,
            };
            if (i is null) return lanes;
            var h = i.Stalls;
            return lanes with
            {
                PageCount = i.PageCount,
                DonePages = i.Done.Count,
                Faults = i.Faults,
                InstalledPages = i.InstalledPages,
                ZeroResolvedPages = i.ZeroResolvedPages,
                ZeroPages = i.ZeroPages,
                RemovedPages = i.RemovedPages,
                DuplicatePages = i.DuplicatePages,
                PresentAtStart = i.PresentPages,
                DemandPages = i.InstalledBy(PageOrigin.Demand),
                PushPages = i.InstalledBy(PageOrigin.Push),
                LocalityPages = i.InstalledBy(PageOrigin.Locality),
                BackgroundPages = i.InstalledBy(PageOrigin.Background),
                StallCount = h.Count,
                StallP50Ms = h.Percentile(0.5).TotalMilliseconds,
                StallP99Ms = h.Percentile(0.99).TotalMilliseconds,
                StallMaxMs = h.Max.TotalMilliseconds,
                StallTotalMs = h.Total.TotalMilliseconds,
            };
        }
    }

    public async Task<PagerCounters> RunAsync(CancellationToken ct = default)
    {
        _clock.Start();
        // QEMU may go on now: faults it raises wait in the uffd queue until the fault thread runs.
        _reg.Ack();
        using var reg = ct.Register(() => { _stopped = true; _demandLane?.Dispose(); _pushLane?.Dispose(); _installer?.Stop(); });

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
        installer.Start(this);
        if (_stopped) installer.Stop();

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
            _stopped = true;
            _demandLane?.Dispose();
            _pushLane?.Dispose();
            foreach (var t in threads) t.Join(2000);
            _clock.Stop();
        }
        return Counters;
    }

    private void ConnectDemandFirst()
    {
        while (true)
        {
            if (_stopped) throw new OperationCanceledException();
            var lane = TryConnect(Lane.Demand);
            if (lane is null) { Thread.Sleep(_options.ReconnectDelayMs); continue; }
            _demandLane = lane;
            return;
        }
    }

    /// <summary>
    /// One control lane held open from the start (heartbeated like the demand lane), so the commit
    /// question, asked while the VM is paused, costs one round trip, not a connect and a handshake.
    /// </summary>
    private void ConnectControlLane()
    {
        while (!_stopped && _controlLane is null)
        {
            try
            {
                _controlLane = SourceControl.OpenLane(_source, _secret, _options.Protection, SessionId, _options.LinkTimeoutMs);
            }
            catch (IOException e)
            {
                if (e is ProtocolException or AuthenticationFailedException) Log?.Invoke($"control lane refused: {e.Message}");
                Thread.Sleep(_options.ReconnectDelayMs);
            }
        }
        if (_demandLane is not null) _lanesUp.TrySetResult();
    }

    /// <summary>
    /// The commit question (<see cref="SourceControl.AskCommit"/>) on the lane held open, or on a
    /// fresh one if that lane is gone. Throws IOException when no answer came (ask again).
    /// </summary>
    public CommitDecision AskCommit(int timeoutMs)
    {
        var lane = Interlocked.Exchange(ref _controlLane, null);
        if (lane is not null && !lane.IsDisposed)
        {
            try
            {
                // Closed once answered: unread, the source's heartbeats would fill its buffer.
                using (lane) return SourceControl.AskCommit(lane);
            }
            catch (IOException) when (!_stopped)
            {
                lane.Dispose(); // asked again below, on a lane of its own
            }
        }
        return SourceControl.AskCommit(_source, _secret, _options.Protection, SessionId, timeoutMs);
    }

    /// <summary>Connects and authenticates one lane; null if the source is unreachable (retry later).</summary>
    private FrameConnection? TryConnect(Lane kind)
    {
        var socket = new Socket(_source.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        FrameConnection? lane = null;
        try
        {
            // A blocking connect, bounded by closing the socket: ConnectAsync would switch the
            // socket to .NET's async engine for good, and every later synchronous Receive would
            // then hop through the epoll thread and the thread pool, whose workers spin in
            // sched_yield (docs/tuning.md, "Pager lanes connect with a blocking Connect").
            LaneSocket.Tune(socket, kind); // requests too: a demand request must not wait behind bulk
            using (new Timer(_ => socket.Dispose(), null, _options.LinkTimeoutMs, Timeout.Infinite))
                socket.Connect(_source);
            lane = new FrameConnection(socket, _options.LinkTimeoutMs);
            var session = Handshake.Client(lane, kind, _secret, _options.Protection);
            if (session.PageSize != _reg.PageSize || session.PageCount != _reg.PageCount)
                throw new ProtocolException($"source serves {session.PageCount} pages of {session.PageSize} B, the mapping has {_reg.PageCount} of {_reg.PageSize} B");
            // A page server that restarted keeps its journaled session id; another migration's has another.
            ulong first = Interlocked.CompareExchange(ref _sessionId, session.SessionId, 0);
            if (first != 0 && first != session.SessionId)
                throw new ProtocolException($"the page server at {_source} now serves session {session.SessionId:x16}, not ours ({first:x16})");
            return lane;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException or IOException && e is not ProtocolException and not AuthenticationFailedException)
        {
            if (lane is not null) Retire(lane); else socket.Dispose();
            return null;
        }
        catch
        {
            if (lane is not null) Retire(lane); else socket.Dispose();
            throw;
        }
    }

    private void Retire(FrameConnection lane)
    {
        Interlocked.Add(ref _closedBytes, lane.BytesReceived);
        lane.Dispose();
    }

    private void DemandLoop()
    {
        // The page a vCPU waits for arrives here, while the push lane's thread installs a stream:
        // this one must not wait for that one's time slice.
        string? applied = ThreadScheduling.PreferForLatency(_options.DemandRealtimePriority);
        if (_options.DemandRealtimePriority > 0)
            Log?.Invoke($"demand threads: {applied ?? "priority refused, fair class"}");
        LaneLoop(Lane.Demand);
    }

    /// <summary>The VM runs: open the push lane (<see cref="PagerOptions.DeferPush"/>).</summary>
    public void StartPush() => _pushAllowed.Set();

    private void PushLoop()
    {
        if (_options.DeferPush)
            while (!_stopped && !_pushAllowed.Wait(100)) { }
        if (_options.PushRealtimePriority > 0)
            Log?.Invoke($"push receiver: {GuideCopy.Interop.ThreadScheduling.PreferForLatency(_options.PushRealtimePriority) ?? "priority refused, fair class"}");
        LaneLoop(Lane.Push);
    }

    private void LaneLoop(Lane kind)
    {
        var installer = _installer!;
        long[] pending = new long[Wire.MaxDemandPerFrame];
        long completeAt = 0;
        try
        {
            while (!_stopped)
            {
                var lane = kind == Lane.Demand ? _demandLane : _pushLane;
                if (lane is null || lane.IsDisposed)
                {
                    if (lane is not null)
                    {
                        Retire(lane);
                        // Forget it, so it is retired (its bytes counted) once.
                        if (kind == Lane.Demand) _demandLane = null; else _pushLane = null;
                        Interlocked.Increment(ref _reconnects);
                        Thread.Sleep(_options.ReconnectDelayMs);
                    }
                    try { lane = TryConnect(kind); }
                    catch (IOException e) when (!_stopped)
                    {
                        int errors = Interlocked.Increment(ref _laneErrors);
                        Log?.Invoke($"{kind} lane refused: {e.Message}; trying again");
                        Thread.Sleep(Math.Min(5000, _options.ReconnectDelayMs * Math.Min(errors, 25)));
                        continue;
                    }
                    if (lane is null) { Thread.Sleep(_options.ReconnectDelayMs); continue; }
                    try
                    {
                        if (kind == Lane.Demand)
                        {
                            // The source sends a new demand lane the device state again from its first byte.
                            _deviceStateOnLane = 0;
                            _demandLane = lane;
                            // Faults still waiting lost their request with the old lane: ask again.
                            int n = installer.CopyPending(pending);
                            if (n > 0) RequestPages(pending.AsSpan(0, n));
                        }
                        else
                        {
                            // Resume: the source skips every page we already have.
                            lane.Send(FrameType.Resume, FrameCodec.EncodeBitmap(installer.Done));
                            _pushLane = lane;
                            completeAt = 0;
                        }
                        Log?.Invoke($"{kind} lane connected");
                    }
                    catch (IOException e) when (!_stopped)
                    {
                        if (e is ProtocolException or AuthenticationFailedException)
                        {
                            Interlocked.Increment(ref _laneErrors);
                            Log?.Invoke($"{kind} lane refused after connecting: {e.Message}");
                            Thread.Sleep(_options.ReconnectDelayMs);
                        }
                        Retire(lane);
                        continue;
                    }
                }
                try
                {
                    var type = lane.ReadFrame();
                    if (type == FrameType.Pages) InstallFrame(installer, lane);
                    else if (type == FrameType.ZeroPages) ZeroFrame(installer, lane);
                    else if (type == FrameType.Complete) completeAt = Stopwatch.GetTimestamp();
                    else if (type == FrameType.ZeroMap && kind == Lane.Demand)
                        installer.MarkZeroMap(FrameCodec.ReadBitmap(lane.Payload, installer.PageCount, "zero map"));
                    else if (type == FrameType.DeviceState && kind == Lane.Demand) DeviceStatePiece(lane.Payload);
                    else if (type == FrameType.DeviceStateEnd && kind == Lane.Demand && !_deviceStateEnded)
                    {
                        _deviceStateEnded = true;
                        DeviceStateEnded?.Invoke(BinaryPrimitives.ReadInt64LittleEndian(lane.Payload));
                    }
                    else if (type != FrameType.Heartbeat) throw new ProtocolException($"unexpected {type} on the {kind} lane");
                    // The source believes it sent everything but pages are missing (sent on a lane
                    // that died): reconnect, and the resume bitmap makes it send them again.
                    if (kind == Lane.Push && completeAt != 0 && !installer.Done.IsFull &&
                        Stopwatch.GetElapsedTime(completeAt).TotalMilliseconds > 1000)
                    {
                        lane.Dispose();
                    }
                }
                catch (IOException e) when (e is not ProtocolException and not AuthenticationFailedException)
                {
                    if (!_stopped) Log?.Invoke($"{kind} lane lost: {e.Message}; reconnecting");
                    lane.Dispose();
                }
                catch (IOException e) when (!_stopped)
                {
                    // A frame that fails its checks was not installed; the lane it came on is
                    // dropped and another one asked for. Never stop: after the commit point a
                    // stopped pager is a VM that waits for ever (a rotated secret, a restarted
                    // source of another session, one bad frame). Back off so a peer that lies on
                    // every lane costs a connection per second, not a busy loop.
                    int errors = Interlocked.Increment(ref _laneErrors);
                    Log?.Invoke($"{kind} lane dropped: {e.Message}; reconnecting");
                    lane.Dispose();
                    Thread.Sleep(Math.Min(5000, _options.ReconnectDelayMs * Math.Min(errors, 25)));
                }
            }
        }
        catch (Exception e) when (!_stopped)
        {
            // A bug of ours (not the peer's bytes): say so; the fault thread stays, the VM waits.
            Log?.Invoke($"{kind} lane thread failed: {e}");
        }
    }

    private static unsafe void InstallFrame(PageInstaller installer, FrameConnection lane)
    {
        var p = lane.Payload;
        var h = FrameCodec.ReadPages(p, lane.PageSize, installer.PageCount);
        fixed (byte* data = p) // the receive buffer is pinned: this costs nothing
            installer.Install(h.First, h.Count, data + Wire.PagesHeaderSize, h.Origin);
    }

    private static void ZeroFrame(PageInstaller installer, FrameConnection lane)
    {
        var h = FrameCodec.ReadZeroPages(lane.Payload, installer.PageCount);
        installer.MarkZero(h.First, h.Count);
    }

    /// <summary>
    /// Pages per Demand frame this pager sends: a quarter of what the wire allows
    /// (<see cref="Wire.MaxDemandPerFrame"/>), so the frame (2 KiB) stays on the fault thread's
    /// stack and the source starts on the first pages of a burst before the last are asked for.
    /// </summary>
    private const int DemandPagesPerFrame = Wire.MaxDemandPerFrame / 4;

    /// <summary>Fault thread: ask the source for these pages on the demand lane.</summary>
    public void RequestPages(ReadOnlySpan<long> pages)
    {
        var lane = _demandLane;
        if (lane is null || lane.IsDisposed) return; // re-asked after the reconnect
        Span<byte> frame = stackalloc byte[FrameCodec.DemandSize(Math.Min(pages.Length, DemandPagesPerFrame))];
        while (pages.Length > 0)
        {
            int n = Math.Min(pages.Length, DemandPagesPerFrame);
            int size = FrameCodec.WriteDemand(frame, pages[..n]);
            try { lane.Send(FrameType.Demand, frame[..size]); }
            catch (IOException) { lane.Dispose(); return; } // the demand thread reconnects and re-asks
            pages = pages[n..];
        }
    }

    private void HeartbeatLoop()
    {
        while (!_stopped)
        {
            Thread.Sleep(_options.HeartbeatMs / 2);
            var lane = _demandLane;
            try { lane?.HeartbeatIfIdle(_options.HeartbeatMs); }
            catch (IOException) { lane?.Dispose(); }
            var control = _controlLane;
            try { control?.HeartbeatIfIdle(_options.HeartbeatMs); }
            catch (IOException) { control?.Dispose(); }
        }
    }

    public void Dispose()
    {
        _stopped = true;
        _pushAllowed.Set();
        _controlLane?.Dispose();
        _demandLane?.Dispose();
        _pushLane?.Dispose();
        _installer?.Stop();
    }
}
