namespace GuideCopy.Transport;

/// <summary>
/// The page server's open lanes, whatever their kind: counted against the connection cap,
/// kept alive with heartbeats while idle, closed on stop, and the one push lane among them.
/// One lock guards the list and the push lane.
/// </summary>
internal sealed class OpenLanes(ServedRam served)
{
    private readonly object _lanesLock = new();
    private readonly List<FrameConnection> _lanes = new();
    private FrameConnection? _pushLane;
    private Thread? _pushThread;
    private long _closedBytes;

    public int Count
    {
        get { lock (_lanesLock) return _lanes.Count; }
    }

    /// <summary>Bytes sent on every lane, open or closed.</summary>
    public long BytesSent
    {
        get
        {
            long bytes = Interlocked.Read(ref _closedBytes);
            lock (_lanesLock) foreach (var l in _lanes) bytes += l.BytesSent;
            return bytes;
        }
    }

    public void Add(FrameConnection lane)
    {
        lock (_lanesLock) _lanes.Add(lane);
    }

    /// <summary>A lane closes: its bytes stay counted.</summary>
    public void Remove(FrameConnection lane)
    {
        lock (_lanesLock)
        {
            _lanes.Remove(lane);
            Interlocked.Add(ref _closedBytes, lane.BytesSent);
        }
    }

    /// <summary>Makes <paramref name="lane"/>, served on the calling thread, the push lane; returns the one it replaces.</summary>
    public (FrameConnection? Lane, Thread? Thread) TakePushLane(FrameConnection lane)
    {
        FrameConnection? old;
        Thread? oldThread;
        lock (_lanesLock)
        {
            old = _pushLane;
            oldThread = _pushThread;
            _pushLane = lane;
            _pushThread = Thread.CurrentThread;
        }
        return (old, oldThread);
    }

    public void DisposeAll()
    {
        lock (_lanesLock) foreach (var l in _lanes) l.Dispose();
    }

    /// <summary>The heartbeat thread: every lane idle for <see cref="PageServerOptions.HeartbeatMs"/> gets one.</summary>
    public void HeartbeatLoop()
    {
        var snapshot = new List<FrameConnection>();
        while (!served.Stopped)
        {
            Thread.Sleep(served.Options.HeartbeatMs / 2);
            snapshot.Clear();
            lock (_lanesLock) snapshot.AddRange(_lanes);
            foreach (var l in snapshot)
            {
                try { l.HeartbeatIfIdle(served.Options.HeartbeatMs); }
                catch (IOException) { l.Dispose(); } // the lane's own thread notices and cleans up
            }
        }
    }
}
