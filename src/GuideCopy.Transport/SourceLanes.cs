using System.Net;
using System.Net.Sockets;
using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>
/// What the rooms of one <see cref="Pager"/> share: the page server's address and key, its
/// session, the current demand, push and control lanes, the lanes' counts, and whether the
/// pager stops. Connects and authenticates a lane (<see cref="TryConnect"/>) and retires one.
/// </summary>
internal sealed class SourceLanes(ShimRegistration registration, EndPoint source, byte[] key, PagerOptions options)
{
    private volatile FrameConnection? _demandLane, _pushLane;
    private volatile FrameConnection? _controlLane;
    private volatile bool _stopped;
    private int _reconnects, _laneErrors;
    private ulong _sessionId;
    private long _closedBytes;

    public ShimRegistration Registration => registration;
    public EndPoint Source => source;
    public byte[] Key => key;
    public PagerOptions Options => options;

    /// <summary>Diagnostics (reconnects, errors). Called from pager threads.</summary>
    public Action<string>? Log { get; set; }

    public bool Stopped => _stopped;

    public void Stop() => _stopped = true;

    public FrameConnection? DemandLane { get => _demandLane; set => _demandLane = value; }
    public FrameConnection? PushLane { get => _pushLane; set => _pushLane = value; }
    public FrameConnection? ControlLane { get => _controlLane; set => _controlLane = value; }

    /// <summary>Takes the control lane held open; the next caller finds none.</summary>
    public FrameConnection? TakeControlLane() => Interlocked.Exchange(ref _controlLane, null);

    /// <summary>The page server's session, from the first handshake; every later lane must be the same session.</summary>
    public ulong SessionId => Volatile.Read(ref _sessionId);

    public int Reconnects => _reconnects;

    public int CountReconnect() => Interlocked.Increment(ref _reconnects);

    /// <summary>Lanes dropped because the source broke the protocol (each reconnected, nothing of them installed).</summary>
    public int LaneErrors => Volatile.Read(ref _laneErrors);

    public int CountLaneError() => Interlocked.Increment(ref _laneErrors);

    /// <summary>Bytes received on every lane, retired or current.</summary>
    public long BytesReceived => Interlocked.Read(ref _closedBytes) + (_demandLane?.BytesReceived ?? 0) + (_pushLane?.BytesReceived ?? 0);

    /// <summary>Connects and authenticates one lane; null if the source is unreachable (retry later).</summary>
    public FrameConnection? TryConnect(Lane kind)
    {
        var socket = new Socket(source.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        FrameConnection? lane = null;
        try
        {
            // A blocking connect, bounded by closing the socket: ConnectAsync would switch the
            // socket to .NET's async engine for good, and every later synchronous Receive would
            // then hop through the epoll thread and the thread pool, whose workers spin in
            // sched_yield (docs/tuning.md, "Pager lanes connect with a blocking Connect").
            LaneSocket.Tune(socket, kind); // requests too: a demand request must not wait behind bulk
            using (new Timer(_ => socket.Dispose(), null, options.LinkTimeoutMs, Timeout.Infinite))
                socket.Connect(source);
            lane = new FrameConnection(socket, options.LinkTimeoutMs);
            var session = Handshake.Client(lane, kind, key, options.Protection);
            if (session.PageSize != registration.PageSize || session.PageCount != registration.PageCount)
                throw new ProtocolException($"source serves {session.PageCount} pages of {session.PageSize} B, the mapping has {registration.PageCount} of {registration.PageSize} B");
            // A page server that restarted keeps its journaled session id; another migration's has another.
            ulong first = Interlocked.CompareExchange(ref _sessionId, session.SessionId, 0);
            if (first != 0 && first != session.SessionId)
                throw new ProtocolException($"the page server at {source} now serves session {session.SessionId:x16}, not ours ({first:x16})");
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

    /// <summary>Closes a lane; its bytes stay counted.</summary>
    public void Retire(FrameConnection lane)
    {
        Interlocked.Add(ref _closedBytes, lane.BytesReceived);
        lane.Dispose();
    }
}
