using System.Net;
using System.Net.Sockets;
using GuideCopy.Interop;
using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>
/// Source side: serves a frozen RAM file to one destination over two lanes. The demand lane
/// answers each request at once, uncapped; the push lane streams everything else in
/// <see cref="PushOrder"/> (push queue, then near recent faults, then address order), skipping
/// zero pages and pages already sent, under an optional bandwidth cap. A reconnecting
/// destination sends its installed bitmap and the push resumes from it.
/// </summary>
/// <remarks>
/// This type owns the server's lifetime, accepts connections and hands each authenticated lane
/// to the service of its kind: <see cref="DemandService"/>, <see cref="PushService"/>,
/// <see cref="ControlService"/>. What they share is in <see cref="ServedRam"/>.
/// </remarks>
public sealed class PageServer : IDisposable
{
    private const int MaxConnections = 32;
    /// <summary>Connections still in their handshake: a peer that cannot authenticate holds at most these slots, each for at most <see cref="Handshake.DeadlineMs"/>.</summary>
    private const int MaxUnauthenticated = 4;
    private readonly PageServerOptions _options;
    private readonly ServedRam _served;
    private readonly SessionInfo _session;
    private readonly OpenLanes _lanes;
    private readonly DeviceStateRelay _deviceState;
    private readonly DemandService _demand;
    private readonly PushService _push;
    private readonly ControlService _control;
    private readonly WarmUp _warmUp;
    private Socket? _listener;
    private Thread? _acceptThread, _heartbeatThread;
    private long _connections, _authFailures, _protocolErrors;
    private int _handshaking;

    public PageServer(string frozenRamFilePath, PageServerOptions options)
    {
        if (options.Secret is not { Length: > 0 }) throw new ArgumentException("a non-empty secret is required");
        _options = options;
        _served = new ServedRam(frozenRamFilePath, options);
        var holes = new HoleAnnouncer(_served);
        _lanes = new OpenLanes(_served);
        _deviceState = new DeviceStateRelay(_served);
        _demand = new DemandService(_served, _deviceState, holes);
        _push = new PushService(_served, _lanes, holes);
        _control = new ControlService(_served, _deviceState);
        _warmUp = new WarmUp(_served);
        if (options.DiscardWarmPages)
        {
            var all = new PageBitmap(_served.PageCount);
            all.SetRange(0, _served.PageCount);
            _deviceState.SetWarmVerdict(FrameCodec.EncodeBitmap(all));
        }
        ulong id = options.SessionId != 0 ? options.SessionId : (ulong)Random.Shared.NextInt64(1, long.MaxValue);
        _session = new SessionInfo(options.PageSize, _served.PageCount, id);
    }

    public long PageCount => _served.PageCount;
    public ulong SessionId => _session.SessionId;

    /// <summary>
    /// The commit decision, asked on a control lane before the destination resumes: true when
    /// the source has recorded, durably, that it will never resume (then the destination must);
    /// false when it rolled back. Must be idempotent: a destination that lost the answer asks
    /// again. Null: always committed (tests and benchmarks with no source VM).
    /// </summary>
    public Func<bool>? CommitRequested { get => _control.CommitRequested; set => _control.CommitRequested = value; }

    /// <summary>
    /// The destination destroyed its copy before its QEMU loaded the whole device state (it never
    /// ran): true once the source has taken its own copy back (resumed); false when it cannot (it
    /// completed). Must be idempotent: a destination that lost the answer asks again. Null: refused.
    /// </summary>
    public Func<bool>? AbandonRequested { get => _control.AbandonRequested; set => _control.AbandonRequested = value; }

    /// <summary>Called once a "the source runs again" answer to an abandon went out: only now may the server be stopped.</summary>
    public Action? AbandonAcknowledged { get => _control.AbandonAcknowledged; set => _control.AbandonAcknowledged = value; }

    /// <summary>The destination has every page; called before the acknowledgement goes out: record it here.</summary>
    public Action? DoneReported { get => _control.DoneReported; set => _control.DoneReported = value; }

    /// <summary>Called once the acknowledgement of a Done went out: only now may the server be stopped.</summary>
    public Action? DoneAcknowledged { get => _control.DoneAcknowledged; set => _control.DoneAcknowledged = value; }
    public long ZeroPages => _served.Ram.ZeroPages.Count;
    public IPEndPoint LocalEndPoint => (IPEndPoint)(_listener?.LocalEndPoint ?? throw new InvalidOperationException("not started"));
    /// <summary>Diagnostics (connections, refusals, errors). Called from server threads.</summary>
    public Action<string>? Log { get => _served.Log; set => _served.Log = value; }

    public PageServerCounters Counters
    {
        get
        {
            long bytes = _lanes.BytesSent;
            var packer = _served.Runs.Packer;
            return new(_demand.Pages, _push.PushPages, _push.LocalityPages,
                _push.BackgroundPages, ZeroPages, bytes, Interlocked.Read(ref _connections),
                Interlocked.Read(ref _authFailures), Interlocked.Read(ref _protocolErrors), _push.Resumes,
                packer.DataBytes, packer.DataWireBytes, packer.PackedRuns);
        }
    }

    /// <summary>
    /// A listening socket on the first free port of [port, port + count). SO_REUSEADDR only, set
    /// raw: .NET's ReuseAddress also sets SO_REUSEPORT on Linux, with which two migrations' page
    /// servers both bound one port and the kernel handed each one's lanes to either (measured: an
    /// evacuation's second migration timed out in its handshakes). SO_REUSEADDR alone lets a
    /// restarted agent bind its port again past the old connections' TIME_WAIT.
    /// </summary>
    private static Socket Bind(IPEndPoint first, int count)
    {
        for (int i = 0; ; i++)
        {
            var s = new Socket(first.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            s.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
            try
            {
                s.Bind(new IPEndPoint(first.Address, first.Port + i));
                return s;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse && i + 1 < count)
            {
                s.Dispose();
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
            {
                s.Dispose();
                throw new IOException(count == 1
                    ? $"page port {first} is in use"
                    : $"every page port {first.Port}-{first.Port + count - 1} on {first.Address} is in use: {count} migrations are served from this host already", e);
            }
        }
    }

    private const int SolSocket = 1, SoReuseAddr = 2; // <asm-generic/socket.h>

    public void Start()
    {
        _listener = Bind(_options.Listen, Math.Max(1, _options.ListenPorts));
        _listener.Listen(16);
        _acceptThread = new Thread(AcceptLoop) { IsBackground = true, Name = "pages-accept" };
        _acceptThread.Start();
        _heartbeatThread = new Thread(_lanes.HeartbeatLoop) { IsBackground = true, Name = "pages-heartbeat" };
        _heartbeatThread.Start();
    }

    /// <summary>
    /// Called on the demand thread for every page the destination asked for, with whether the
    /// push lane had already sent it (in flight); returns where whoever fills the push queue had
    /// put that page in it (its position in the guide's log), or -1 if it had not predicted it.
    /// The guide's control loop uses it to see whether the guide still predicts the destination;
    /// the push order uses it to stay ahead (<see cref="PushLead"/>) or, for an unpredicted
    /// fault, to send its neighbours first. Must be cheap and must not allocate.
    /// </summary>
    public Func<long, bool, long>? DemandObserved { get => _demand.DemandObserved; set => _demand.DemandObserved = value; }

    /// <summary>The push lane's cap in bytes per second (0: none).</summary>
    public long BandwidthBytesPerSecond => _options.BandwidthBytesPerSecond;

    /// <summary>Queue entries the push jumps past a predicted fault (<see cref="PushOrder.Lead"/>).</summary>
    public long PushLead { get => _served.Order.Lead; set => _served.Order.Lead = value; }

    /// <summary>Demand faults on guide-log entries the push had not sent yet.</summary>
    public long PushOvertaken => _served.Order.Overtaken;

    /// <summary>Queue entries skipped to stay ahead of the destination.</summary>
    public long PushSkipped => _served.Order.PushSkipped;

    /// <summary>Queues pages for the push lane, in order, ahead of locality and background (the guide log feeds this).</summary>
    public int EnqueuePush(ReadOnlySpan<long> pageIndices)
    {
        int n = _served.Order.EnqueuePush(pageIndices);
        if (n > 0) _served.PushWork.Release();
        return n;
    }

    /// <summary>True once a destination's demand lane is authenticated (the lane the device state goes on).</summary>
    public bool DemandLaneUp => _served.DemandLaneUp;

    /// <summary>
    /// Device state bytes, as the paused source QEMU writes them, to the destination on its demand
    /// lane: uncapped, and idle while the VM is paused. Throws IOException when no destination is connected.
    /// </summary>
    public void SendDeviceState(ReadOnlySpan<byte> bytes) => _deviceState.Send(bytes);

    /// <summary>The device state is whole: the destination may finish loading it.</summary>
    public void EndDeviceState() => _deviceState.End();

    /// <summary>
    /// Before the pause, while the VM runs: sends the pages it does not write, as Warm pages on the
    /// demand lane, until every such page went, the guest spoils them as fast as they go, or the
    /// limit (<see cref="WarmUp"/>); then waits for the lane to drain. Call once, before the freeze.
    /// </summary>
    public WarmUpOutcome WarmUp(RamWriteTracker tracker, WarmUpLimits limits, CancellationToken ct) => _warmUp.Run(tracker, limits, ct);

    /// <summary>
    /// With the VM stopped (its device state whole): the last scan, then the verdict to the
    /// destination, on this and every later demand lane. Without a tracker (lost), or when the
    /// scan fails, every warm page is declared stale: a verdict must go (the destination's push
    /// lane waits for it), and a wrong "good" would be a stale page in the guest. Returns the
    /// stale pages, or -1 when no warm-up ran.
    /// </summary>
    public long SendWarmVerdict(RamWriteTracker? tracker)
    {
        if (_warmUp.Sent is not { } sent)
        {
            return -1;
        }

        var stale = _warmUp.Stale!;
        try
        {
            if (tracker is null)
            {
                stale = sent;
            }
            else
            {
                _warmUp.FinalScan(tracker);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            Log?.Invoke($"the warm-up's last scan failed ({e.Message}): every warm page declared stale");
            stale = sent;
        }

        _deviceState.SetWarmVerdict(FrameCodec.EncodeBitmap(stale));
        return stale.Count;
    }

    /// <summary>
    /// The source is paused and its device state is out: serve pages from now on. Nothing here
    /// grows with RAM: the holes are looked for (the kernel walks the file's page cache) once the
    /// first push lane comes after the freeze (the destination opens it when it runs), on a
    /// thread of their own, and their map follows on the demand lane; until then a fault on a
    /// hole is asked for and answered as a zero page, like any all-zero page.
    /// </summary>
    public void Freeze()
    {
        if (_served.Frozen.IsSet) return;
        _served.Frozen.Set();
        _served.PushWork.Release();
    }

    /// <summary>Called once a push lane starts after the freeze (on its thread): the destination runs and wants its pages.</summary>
    public Action? PushLaneUp { get => _push.PushLaneUp; set => _push.PushLaneUp = value; }

    private void AcceptLoop()
    {
        while (!_served.Stopped)
        {
            Socket s;
            try { s = _listener!.Accept(); }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                if (_served.Stopped) return;
                // EMFILE, ECONNABORTED ...: say so, breathe, and keep serving the lanes we have.
                Log?.Invoke($"accept failed: {(e as SocketException)?.SocketErrorCode.ToString() ?? e.Message}");
                Thread.Sleep(50);
                continue;
            }
            Interlocked.Increment(ref _connections);
            int open = _lanes.Count;
            if (open >= MaxConnections || Volatile.Read(ref _handshaking) >= MaxUnauthenticated)
            {
                // One destination needs two lanes (plus a few stale ones during a reconnect), and
                // has at most three handshakes going at once.
                Log?.Invoke($"{s.RemoteEndPoint}: refused, {open} connections open, {_handshaking} in their handshake");
                s.Dispose();
                continue;
            }
            Interlocked.Increment(ref _handshaking);
            try
            {
                new Thread(() => Serve(s)) { IsBackground = true, Name = "pages-lane" }.Start();
            }
            catch (OutOfMemoryException)
            {
                // No thread for it: refuse this one, keep serving the others.
                Interlocked.Decrement(ref _handshaking);
                s.Dispose();
            }
        }
    }

    private void Serve(Socket socket)
    {
        var lane = new FrameConnection(socket, _options.LinkTimeoutMs);
        string peer = socket.RemoteEndPoint?.ToString() ?? "?";
        _lanes.Add(lane);
        int handshaking = 1;
        try
        {
            Lane kind;
            // One deadline for the whole handshake: a peer trickling a byte per receive timeout
            // would otherwise hold the slot for minutes.
            using (new Timer(_ => { if (!lane.Authenticated) lane.Dispose(); }, null, Handshake.DeadlineMs, Timeout.Infinite))
                kind = Handshake.Server(lane, _options.Secret, _session, _options.Protection);
            Interlocked.Decrement(ref _handshaking);
            handshaking = 0;
            ServeLane(lane, socket, kind, peer);
        }
        catch (AuthenticationFailedException e)
        {
            Interlocked.Increment(ref _authFailures);
            Log?.Invoke($"{peer}: refused: {e.Message}");
        }
        catch (ProtocolException e)
        {
            Interlocked.Increment(ref _protocolErrors);
            lane.TrySendError(e.Message);
            Log?.Invoke($"{peer}: protocol error: {e.Message}");
        }
        catch (IOException e)
        {
            if (!_served.Stopped) Log?.Invoke($"{peer}: lane closed: {e.Message}");
        }
        catch (Exception e) when (e is ObjectDisposedException or SocketException)
        {
            // The lane was closed under us between its handshake and its first frame (the server
            // stopping, the handshake deadline's timer): setting its socket options throws, and on
            // a thread of its own that ended the process (CI 2026-12-07: the test host crashed in
            // LaneSocket.Tune, SourceControlTests.ARolledBackSourceSaysSo running).
            if (!_served.Stopped) Log?.Invoke($"{peer}: lane closed: {e.Message}");
        }
        finally
        {
            if (handshaking != 0) Interlocked.Decrement(ref _handshaking);
            _lanes.Remove(lane);
            lane.Dispose();
        }
    }

    /// <summary>An authenticated lane, on its own thread, until it closes or the server stops.</summary>
    private void ServeLane(FrameConnection lane, Socket socket, Lane kind, string peer)
    {
        LaneSocket.Tune(socket, kind);
        if (kind == Lane.Push) LaneSocket.Pace(socket, _options.BandwidthBytesPerSecond);
        Log?.Invoke($"{peer}: {kind} lane up");
        if (kind == Lane.Control)
        {
            // The commit question comes while the VM is paused: answer it like a fault.
            ThreadScheduling.PreferForLatency(_options.DemandRealtimePriority);
            _control.Serve(lane);
        }
        else if (kind == Lane.Demand)
        {
            // A vCPU on the destination waits for every answer; the push lane's thread (and
            // the guide's QEMU and fault service) may wait instead.
            ThreadScheduling.PreferForLatency(_options.DemandRealtimePriority);
            _demand.Serve(lane);
        }
        else _push.Serve(lane);
    }

    public void Stop()
    {
        if (_served.Stopped) return;
        _served.Stop();
        _listener?.Dispose();
        _lanes.DisposeAll();
        _acceptThread?.Join(2000);
        _served.PushWork.Release();
    }

    public void Dispose()
    {
        Stop();
        _served.Dispose();
    }
}
