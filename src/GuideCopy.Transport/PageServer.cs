using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Serialization;
using GuideCopy.MemoryPlane;
using GuideCopy.Interop;

namespace GuideCopy.Transport;

/// <summary>Knobs of a <see cref="PageServer"/>; defaults and units here.</summary>
public sealed class PageServerOptions
{
    /// <summary>The migration's key both agents derive (<see cref="LaneKeys.ForMigration"/> of the secret file's bytes).</summary>
    public required byte[] Secret { get; init; }
    /// <summary>Sealed (AEGIS-256, the default) or clear text (an explicit choice for closed lab links); the pager must ask for the same.</summary>
    public LaneProtection Protection { get; init; } = LaneProtection.Sealed;
    /// <summary>Where to listen; port 0 picks one (see <see cref="PageServer.LocalEndPoint"/>).</summary>
    public IPEndPoint Listen { get; init; } = new(IPAddress.Any, DefaultPort);

    /// <summary>The page port the agent's Agent:PageListen defaults to (docs/configuration.md) and the firewall opens.</summary>
    public const int DefaultPort = 7171;
    /// <summary>Cap on push/locality/background bytes per second; 0 = none. Never applied to demand pages.</summary>
    public long BandwidthBytesPerSecond { get; init; }
    /// <summary>Page size of the RAM file (4096 for tmpfs, 2 MiB for hugetlbfs).</summary>
    public int PageSize { get; init; } = 4096;
    /// <summary>A lane silent (or blocked) this long is considered dead, in ms.</summary>
    public int LinkTimeoutMs { get; init; } = 3000;
    /// <summary>Idle lanes get a heartbeat this often, in ms.</summary>
    public int HeartbeatMs { get; init; } = 500;
    /// <summary>False: serve demand only (used to measure remote fault latency).</summary>
    public bool PushEnabled { get; init; } = true;
    /// <summary>
    /// SCHED_FIFO priority of the thread answering the demand lane, 0: fair class. See
    /// <see cref="GuideCopy.Interop.ThreadScheduling.PreferForLatency"/>.
    /// </summary>
    public int DemandRealtimePriority { get; init; }
    /// <summary>Session id in the welcome; 0 picks a random one. A restarted source serves its journaled id again.</summary>
    public ulong SessionId { get; init; }
    /// <summary>
    /// Armed before the source pauses: lanes connect and authenticate, but no page is served and
    /// the file's holes are not looked for until <see cref="PageServer.Freeze"/> (the RAM is still
    /// written until then). False: the file is frozen already (a restarted source, tools, tests).
    /// </summary>
    public bool Armed { get; init; }
}

/// <summary>A snapshot of a page server's counters.</summary>
public readonly record struct PageServerCounters(
    long DemandPages, long PushPages, long LocalityPages, long BackgroundPages,
    long ZeroPagesSkipped, long BytesOnWire, long Connections, long AuthFailures, long ProtocolErrors, long Resumes)
{
    [JsonIgnore]
    public long PagesSent => DemandPages + PushPages + LocalityPages + BackgroundPages;
}

/// <summary>
/// Source side: serves a frozen RAM file to one destination over two lanes. The demand lane
/// answers each request at once, uncapped; the push lane streams everything else in
/// <see cref="PushOrder"/> (push queue, then near recent faults, then address order), skipping
/// zero pages and pages already sent, under an optional bandwidth cap. A reconnecting
/// destination sends its installed bitmap and the push resumes from it.
/// </summary>
public sealed class PageServer : IDisposable
{
    private const int MaxConnections = 32;
    /// <summary>Connections still in their handshake: a peer that cannot authenticate holds at most these slots, each for at most <see cref="Handshake.DeadlineMs"/>.</summary>
    private const int MaxUnauthenticated = 4;
    private readonly PageServerOptions _options;
    private readonly FrozenRam _ram;
    private readonly PageBitmap _sent;
    private readonly PushOrder _order;
    private readonly SessionInfo _session;
    private readonly object _lanesLock = new();
    private readonly List<FrameConnection> _lanes = new();
    private readonly SemaphoreSlim _pushWork = new(0, int.MaxValue);
    private Socket? _listener;
    private Thread? _acceptThread, _heartbeatThread;
    private FrameConnection? _pushLane;
    private Thread? _pushThread;
    private volatile bool _stopped;
    private long _zeroFound; // all-zero data pages announced instead of sent (diagnostics)
    private long _demand, _push, _locality, _background, _closedBytes, _connections, _authFailures, _protocolErrors, _resumes;
    private int _handshaking;
    private long _nextSendTicks; // bandwidth cap: when the next capped byte may go
    private readonly ManualResetEventSlim _frozen = new(false);
    private readonly object _zeroMapLock = new();
    private volatile bool _zeroMapReady;
    private FrameConnection? _demandLane;

    /// <summary>Orders device-state sends against a new demand lane's replay of what was sent before it.</summary>
    private readonly object _deviceStateLock = new();

    /// <summary>The device state sent so far; null once the destination has loaded it (it asked for the commit).</summary>
    private System.Buffers.ArrayBufferWriter<byte>? _deviceState = new();

    private bool _deviceStateEnded;
    private long _deviceStateBytes;

    public PageServer(string frozenRamFilePath, PageServerOptions options)
    {
        if (options.Secret is not { Length: > 0 }) throw new ArgumentException("a non-empty secret is required");
        _options = options;
        _ram = new FrozenRam(frozenRamFilePath, options.PageSize, scanHoles: !options.Armed);
        if (!options.Armed)
        {
            _zeroMapReady = true;
            _frozen.Set();
        }
        _sent = new PageBitmap(_ram.PageCount);
        _order = new PushOrder(_ram.PageCount);
        ulong id = options.SessionId != 0 ? options.SessionId : (ulong)Random.Shared.NextInt64(1, long.MaxValue);
        _session = new SessionInfo(options.PageSize, _ram.PageCount, id);
    }

    public long PageCount => _ram.PageCount;
    public ulong SessionId => _session.SessionId;

    /// <summary>
    /// The commit decision, asked on a control lane before the destination resumes: true when
    /// the source has recorded, durably, that it will never resume (then the destination must);
    /// false when it rolled back. Must be idempotent: a destination that lost the answer asks
    /// again. Null: always committed (tests and benchmarks with no source VM).
    /// </summary>
    public Func<bool>? CommitRequested { get; set; }

    /// <summary>The destination has every page; called before the acknowledgement goes out: record it here.</summary>
    public Action? DoneReported { get; set; }

    /// <summary>Called once the acknowledgement of a Done went out: only now may the server be stopped.</summary>
    public Action? DoneAcknowledged { get; set; }
    public long ZeroPages => _ram.ZeroPages.Count;
    public IPEndPoint LocalEndPoint => (IPEndPoint)(_listener?.LocalEndPoint ?? throw new InvalidOperationException("not started"));
    /// <summary>Diagnostics (connections, refusals, errors). Called from server threads.</summary>
    public Action<string>? Log { get; set; }

    public PageServerCounters Counters
    {
        get
        {
            long bytes = Interlocked.Read(ref _closedBytes);
            lock (_lanesLock) foreach (var l in _lanes) bytes += l.BytesSent;
            return new(Interlocked.Read(ref _demand), Interlocked.Read(ref _push), Interlocked.Read(ref _locality),
                Interlocked.Read(ref _background), ZeroPages, bytes, Interlocked.Read(ref _connections),
                Interlocked.Read(ref _authFailures), Interlocked.Read(ref _protocolErrors), Interlocked.Read(ref _resumes));
        }
    }

    public void Start()
    {
        _listener = new Socket(_options.Listen.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        _listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        _listener.Bind(_options.Listen);
        _listener.Listen(16);
        _acceptThread = new Thread(AcceptLoop) { IsBackground = true, Name = "pages-accept" };
        _acceptThread.Start();
        _heartbeatThread = new Thread(HeartbeatLoop) { IsBackground = true, Name = "pages-heartbeat" };
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
    public Func<long, bool, long>? DemandObserved { get; set; }

    /// <summary>The push lane's cap in bytes per second (0: none).</summary>
    public long BandwidthBytesPerSecond => _options.BandwidthBytesPerSecond;

    /// <summary>Queue entries the push jumps past a predicted fault (<see cref="PushOrder.Lead"/>).</summary>
    public long PushLead { get => _order.Lead; set => _order.Lead = value; }

    /// <summary>Demand faults on guide-log entries the push had not sent yet.</summary>
    public long PushOvertaken => _order.Overtaken;

    /// <summary>Queue entries skipped to stay ahead of the destination.</summary>
    public long PushSkipped => _order.PushSkipped;

    /// <summary>Queues pages for the push lane, in order, ahead of locality and background (the guide log feeds this).</summary>
    public int EnqueuePush(ReadOnlySpan<long> pageIndices)
    {
        int n = _order.EnqueuePush(pageIndices);
        if (n > 0) _pushWork.Release();
        return n;
    }

    /// <summary>True once a destination's demand lane is authenticated (the lane the device state goes on).</summary>
    public bool DemandLaneUp => Volatile.Read(ref _demandLane) is { IsDisposed: false };

    /// <summary>
    /// Device state bytes, as the paused source QEMU writes them, to the destination on its demand
    /// lane: uncapped, and idle while the VM is paused. Throws IOException when no destination is connected.
    /// </summary>
    public void SendDeviceState(ReadOnlySpan<byte> bytes)
    {
        lock (_deviceStateLock)
        {
            // Kept whole (hundreds of KiB, independent of RAM) so a demand lane that comes after a
            // lost one gets it again from byte 0: the destination skips what it already has.
            if (_deviceState is null)
            {
                return; // loaded already: nothing of it is asked for any more
            }

            System.Buffers.BuffersExtensions.Write(_deviceState, bytes);
            _deviceStateBytes += bytes.Length;
            var lane = _demandLane;
            if (lane is null || lane.IsDisposed)
            {
                return; // the next demand lane gets it all
            }

            try
            {
                SendDeviceStateChunks(lane, bytes);
            }
            catch (IOException)
            {
                lane.Dispose(); // the destination reconnects and gets it all again
            }
        }
    }

    /// <summary>The device state is whole: the destination may finish loading it.</summary>
    public void EndDeviceState()
    {
        lock (_deviceStateLock)
        {
            _deviceStateEnded = true;
            var lane = _demandLane;
            if (lane is null || lane.IsDisposed || _deviceState is null)
            {
                return;
            }

            try
            {
                SendDeviceStateEnd(lane);
            }
            catch (IOException)
            {
                lane.Dispose();
            }
        }
    }

    private static void SendDeviceStateChunks(FrameConnection lane, ReadOnlySpan<byte> bytes)
    {
        while (bytes.Length > 0)
        {
            int n = Math.Min(bytes.Length, Wire.MaxDeviceStateChunk);
            lane.Send(FrameType.DeviceState, bytes[..n]);
            bytes = bytes[n..];
        }
    }

    private void SendDeviceStateEnd(FrameConnection lane)
    {
        Span<byte> total = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(total, _deviceStateBytes);
        lane.Send(FrameType.DeviceStateEnd, total);
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
        if (_frozen.IsSet) return;
        _frozen.Set();
        _pushWork.Release();
    }

    /// <summary>Called once a push lane starts after the freeze (on its thread): the destination runs and wants its pages.</summary>
    public Action? PushLaneUp { get; set; }

    private int _holeScanStarted;

    private void StartHoleScanOnce()
    {
        if (_zeroMapReady || Interlocked.Exchange(ref _holeScanStarted, 1) != 0) return;
        new Thread(ScanHolesThenAnnounce) { IsBackground = true, Name = "pages-holes" }.Start();
    }

    private void ScanHolesThenAnnounce()
    {
        try
        {
            _ram.ScanHoles();
        }
        catch (IOException e)
        {
            Log?.Invoke($"holes not found ({e.Message}): zero pages are announced as they are read");
            return;
        }
        FrameConnection? lane;
        lock (_zeroMapLock)
        {
            _zeroMapReady = true;
            lane = _demandLane;
        }
        try { lane?.Send(FrameType.ZeroMap, FrameCodec.EncodeBitmap(_ram.ZeroPages)); }
        catch (IOException) { lane!.Dispose(); } // the next demand lane gets it on connect
    }

    private void AcceptLoop()
    {
        while (!_stopped)
        {
            Socket s;
            try { s = _listener!.Accept(); }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                if (_stopped) return;
                // EMFILE, ECONNABORTED ...: say so, breathe, and keep serving the lanes we have.
                Log?.Invoke($"accept failed: {(e as SocketException)?.SocketErrorCode.ToString() ?? e.Message}");
                Thread.Sleep(50);
                continue;
            }
            Interlocked.Increment(ref _connections);
            int open;
            lock (_lanesLock) open = _lanes.Count;
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
        lock (_lanesLock) _lanes.Add(lane);
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
            LaneSocket.Tune(socket, kind);
            if (kind == Lane.Push) LaneSocket.Pace(socket, _options.BandwidthBytesPerSecond);
            Log?.Invoke($"{peer}: {kind} lane up");
            if (kind == Lane.Control)
            {
                // The commit question comes while the VM is paused: answer it like a fault.
                ThreadScheduling.PreferForLatency(_options.DemandRealtimePriority);
                ServeControl(lane);
            }
            else if (kind == Lane.Demand)
            {
                // A vCPU on the destination waits for every answer; the push lane's thread (and
                // the guide's QEMU and fault service) may wait instead.
                ThreadScheduling.PreferForLatency(_options.DemandRealtimePriority);
                ServeDemand(lane);
            }
            else ServePush(lane);
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
            if (!_stopped) Log?.Invoke($"{peer}: lane closed: {e.Message}");
        }
        finally
        {
            if (handshaking != 0) Interlocked.Decrement(ref _handshaking);
            lock (_lanesLock)
            {
                _lanes.Remove(lane);
                Interlocked.Add(ref _closedBytes, lane.BytesSent);
            }
            lane.Dispose();
        }
    }

    private void ServeDemand(FrameConnection lane)
    {
        // The zero map as soon as it is known (at once on a frozen file; after the freeze on an
        // armed one, sent by ScanHolesThenAnnounce): the destination resolves those faults itself.
        bool zeroMapReady;
        lock (_deviceStateLock)
        {
            lock (_zeroMapLock)
            {
                _demandLane = lane;
                zeroMapReady = _zeroMapReady;
            }

            // A lane after a lost one: what of the device state is out goes again, before any
            // later piece (SendDeviceState holds the same lock).
            if (_deviceState is { WrittenCount: > 0 })
            {
                SendDeviceStateChunks(lane, _deviceState.WrittenSpan);
            }

            if (_deviceStateEnded && _deviceState is not null)
            {
                SendDeviceStateEnd(lane);
            }
        }
        if (zeroMapReady) lane.Send(FrameType.ZeroMap, FrameCodec.EncodeBitmap(_ram.ZeroPages));
        // Armed: the destination has nothing to ask before it runs, and nothing is served before the freeze.
        while (!_frozen.Wait(100)) if (_stopped || lane.IsDisposed) return;

        int pageSize = _ram.PageSize;
        byte[] frame = GC.AllocateUninitializedArray<byte>(Wire.HeaderSize + Wire.PagesHeaderSize + pageSize + FrameConnection.TrailerRoom, pinned: true);
        while (!_stopped)
        {
            var type = lane.ReadFrame();
            if (type == FrameType.Heartbeat) continue;
            if (type != FrameType.Demand) throw new ProtocolException($"unexpected {type} on the demand lane");
            int count = FrameCodec.ReadDemandCount(lane.Payload);
            for (int i = 0; i < count; i++)
            {
                long page = FrameCodec.DemandPage(lane.Payload, i, PageCount);
                // Answer even if already sent (it may be in flight on the push lane): a fault waits for it.
                bool alreadySent = _sent.IsSet(page);
                int sent = SendRun(lane, frame, page, 1, PageOrigin.Demand);
                long predictedAt = DemandObserved?.Invoke(page, alreadySent) ?? -1;
                _sent.TrySet(page);
                Interlocked.Add(ref _demand, sent);
                if (_options.PushEnabled)
                {
                    _order.NoteDemand(page, predictedAt);
                    _pushWork.Release();
                }
            }
        }
    }

    private void ServeControl(FrameConnection lane)
    {
        while (!_stopped)
        {
            var type = lane.ReadFrame();
            if (type == FrameType.Heartbeat) continue;
            if (type == FrameType.Commit)
            {
                bool committed = CommitRequested?.Invoke() ?? true;
                if (committed)
                {
                    // The destination asks only once its QEMU has loaded the whole device state:
                    // a demand lane after a link cut needs none of it again.
                    lock (_deviceStateLock) _deviceState = null;
                }

                Span<byte> decision = [(byte)(committed ? CommitDecision.Committed : CommitDecision.RolledBack)];
                lane.Send(FrameType.CommitDecision, decision);
                Log?.Invoke($"commit asked: {(committed ? "committed" : "rolled back")}");
            }
            else if (type == FrameType.Done)
            {
                DoneReported?.Invoke();
                lane.Send(FrameType.DoneAck, default);
                DoneAcknowledged?.Invoke();
            }
            else throw new ProtocolException($"unexpected {type} on the control lane");
        }
    }

    private void ServePush(FrameConnection lane)
    {
        lane.Expect(FrameType.Resume);
        var bitmap = FrameCodec.ReadBitmap(lane.Payload, PageCount, "resume bitmap");
        // One push lane at a time: stop the old one before trusting the new bitmap, so no page
        // is marked sent by a lane whose bytes will never arrive.
        FrameConnection? old;
        Thread? oldThread;
        lock (_lanesLock)
        {
            old = _pushLane;
            oldThread = _pushThread;
            _pushLane = lane;
            _pushThread = Thread.CurrentThread;
        }
        old?.Dispose();
        if (oldThread is not null && oldThread != Thread.CurrentThread) oldThread.Join(_options.LinkTimeoutMs * 2);
        // Armed: connected before the pause, the push starts once the RAM is frozen and the device state is out.
        while (!_frozen.Wait(100)) if (_stopped || lane.IsDisposed) return;
        StartHoleScanOnce();
        PushLaneUp?.Invoke();
        _sent.ResetTo(bitmap);
        _order.RestartBackground();
        Interlocked.Increment(ref _resumes);
        if (!_options.PushEnabled)
        {
            while (!_stopped && !lane.IsDisposed) Thread.Sleep(100);
            return;
        }

        int pageSize = _ram.PageSize, perFrame = Wire.PagesPerFrame(pageSize);
        byte[] frame = GC.AllocateUninitializedArray<byte>(Wire.HeaderSize + Wire.PagesHeaderSize + perFrame * pageSize + FrameConnection.TrailerRoom, pinned: true);
        AnnounceZeroPagesAgain(lane, frame);
        bool completeSent = false;
        while (!_stopped && !lane.IsDisposed)
        {
            if (!_order.TryNext(out long page, out var origin))
            {
                if (!completeSent)
                {
                    lane.Send(FrameType.Complete, default);
                    completeSent = true;
                }
                _pushWork.Wait(100);
                continue;
            }
            if (_ram.ZeroPages.IsSet(page) || !_sent.TrySet(page)) continue;
            completeSent = false;
            int run = 1, maxRun = MaxRun(origin, perFrame, pageSize);
            // A guide-queue entry takes along only the queue entries that are also its next pages.
            while (run < maxRun && page + run < PageCount && !_ram.ZeroPages.IsSet(page + run)
                   && (origin != PageOrigin.Push || _order.TryTakePushIf(page + run)) && _sent.TrySet(page + run)) run++;
            if (origin == PageOrigin.Background) _order.SkipBackground(page + run - 1);
            Throttle((long)run * pageSize);
            int sentPages = SendRun(lane, frame, page, run, origin);
            if (origin == PageOrigin.Push) Interlocked.Add(ref _push, sentPages);
            else if (origin == PageOrigin.Locality) Interlocked.Add(ref _locality, sentPages);
            else Interlocked.Add(ref _background, sentPages);
        }
    }

    /// <summary>
    /// After a resume: announces every page that is zero here but not present at the destination.
    /// A zero page found on the fly is marked in the zero map for good and only announced (16
    /// bytes); an announcement that went out on a lane that then died never arrived, and the push
    /// skips zero pages, so without this the destination would wait for it forever (seen: a push
    /// lane that timed out, then a reconnect every 1.5 s, "complete" each time, never complete).
    /// </summary>
    private void AnnounceZeroPagesAgain(FrameConnection lane, byte[] frame)
    {
        var zero = _ram.ZeroPages;
        long p = 0;
        while (p < PageCount)
        {
            if (!zero.IsSet(p) || _sent.IsSet(p))
            {
                p++;
                continue;
            }

            long first = p;
            while (p < PageCount && zero.IsSet(p) && _sent.TrySet(p)) p++;
            WritePagesHeader(frame, first, (int)(p - first), PageOrigin.Background);
            lane.SendPrepared(frame, FrameType.ZeroPages, Wire.PagesHeaderSize);
        }
    }

    /// <summary>
    /// How many contiguous pages one pick may take along. A guide-queue entry takes only the
    /// queue entries right behind it that are also its next pages: its other neighbours are not
    /// what the guide touched next, and a 1 MiB run behind each entry (128 ms at 80 Mbit/s) would
    /// bury the guide's order (measured on kv, whose guide log is random pages: guest throughput
    /// after switchover 20-31% with such runs vs 37-44% without a guide).
    /// Locality takes its window; the background sweep long runs (fast installs) but, under a
    /// cap, no more than ~10 ms of the link, so a guide page queued meanwhile waits little.
    /// </summary>
    private int MaxRun(PageOrigin origin, int perFrame, int pageSize) => origin switch
    {
        PageOrigin.Push => perFrame, // bounded by the queue: only entries that are the next pages join
        PageOrigin.Locality => Math.Min(perFrame, _order.LocalityWindow), // one fault's neighbours per frame
        _ => _options.BandwidthBytesPerSecond > 0
            ? (int)Math.Clamp(_options.BandwidthBytesPerSecond / 100 / pageSize, 16, perFrame)
            : perFrame,
    };

    /// <summary>
    /// Reads pages [first, first+count) and sends them: runs of data pages as Pages frames, runs
    /// of all-zero pages as 16-byte ZeroPages notices (found here, on the fly: the zero map sent
    /// up front has only the file's holes, so no scan delays the first fault).
    /// </summary>
    /// <returns>The number of data pages sent (zero pages are not counted as sent).</returns>
    private int SendRun(FrameConnection lane, byte[] frame, long first, int count, PageOrigin origin)
    {
        int dataPages = 0;
        const int room = Wire.HeaderSize + Wire.PagesHeaderSize;
        int pageSize = _ram.PageSize;
        _ram.Read(first, count, frame.AsSpan(room, count * pageSize));
        int i = 0;
        while (i < count)
        {
            bool zero = ZeroMap.IsZero(frame.AsSpan(room + i * pageSize, pageSize));
            int n = 1;
            while (i + n < count && ZeroMap.IsZero(frame.AsSpan(room + (i + n) * pageSize, pageSize)) == zero) n++;
            // The frame header goes right before the run's data: those bytes belong to pages
            // already sent (or skipped), since frames go out synchronously and in order.
            var f = frame.AsSpan(i * pageSize);
            WritePagesHeader(f, first + i, n, origin);
            if (zero)
            {
                for (int k = 0; k < n; k++) _ram.ZeroPages.TrySet(first + i + k);
                lane.SendPrepared(f, FrameType.ZeroPages, Wire.PagesHeaderSize);
                Interlocked.Add(ref _zeroFound, n);
            }
            else
            {
                lane.SendPrepared(f, FrameType.Pages, Wire.PagesHeaderSize + n * pageSize);
                dataPages += n;
            }
            i += n;
        }
        return dataPages;
    }

    /// <summary>The Pages / ZeroPages header (first page, count, origin) after the frame header of <paramref name="frame"/>.</summary>
    private static void WritePagesHeader(Span<byte> frame, long first, int count, PageOrigin origin) =>
        FrameCodec.WritePagesHeader(frame[Wire.HeaderSize..], first, count, origin);

    private void Throttle(long bytes)
    {
        long rate = _options.BandwidthBytesPerSecond;
        if (rate <= 0) return;
        long now = Stopwatch.GetTimestamp();
        long next = Math.Max(_nextSendTicks, now - Stopwatch.Frequency / 20); // allow a 50 ms burst
        long wait = next - now;
        if (wait > 0) Thread.Sleep(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency));
        _nextSendTicks = next + bytes * Stopwatch.Frequency / rate;
    }

    private void HeartbeatLoop()
    {
        var snapshot = new List<FrameConnection>();
        while (!_stopped)
        {
            Thread.Sleep(_options.HeartbeatMs / 2);
            snapshot.Clear();
            lock (_lanesLock) snapshot.AddRange(_lanes);
            foreach (var l in snapshot)
            {
                try { l.HeartbeatIfIdle(_options.HeartbeatMs); }
                catch (IOException) { l.Dispose(); } // the lane's own thread notices and cleans up
            }
        }
    }

    public void Stop()
    {
        if (_stopped) return;
        _stopped = true;
        _listener?.Dispose();
        lock (_lanesLock) foreach (var l in _lanes) l.Dispose();
        _acceptThread?.Join(2000);
        _pushWork.Release();
    }

    public void Dispose()
    {
        Stop();
        _ram.Dispose();
    }
}
