using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>
/// One lane of a <see cref="Pager"/>, demand or push, on its own thread until the pager stops:
/// connects it, reads its frames, and reconnects it when it breaks (link down, source restart,
/// a frame that fails its checks): the demand lane re-asking for every page a fault still waits
/// on, the push lane resuming from the installed bitmap.
/// </summary>
internal sealed class LaneKeeper
{
    private readonly Lane _kind;
    private readonly SourceLanes _lanes;
    private readonly PageInstaller _installer;
    private readonly DeviceStateStream _deviceState;
    private readonly DemandRequests _requests;
    private readonly PushCompletion _completion = new();
    private readonly ReceivedFrames _frames;

    /// <summary>Faults still waiting when a demand lane comes up (<see cref="PageInstaller.CopyPending"/>).</summary>
    private readonly long[] _pending = new long[Wire.MaxDemandPerFrame];

    private readonly WarmPages _warm;

    public LaneKeeper(Lane kind, SourceLanes lanes, PageInstaller installer, DeviceStateStream deviceState, DemandRequests requests, WarmPages warm)
    {
        _kind = kind;
        _lanes = lanes;
        _installer = installer;
        _deviceState = deviceState;
        _requests = requests;
        _warm = warm;
        _frames = new ReceivedFrames(kind, installer, deviceState, _completion, warm);
    }

    /// <summary>The lane's thread: until the pager stops, a lane up and its frames read.</summary>
    public void Run()
    {
        try
        {
            while (!_lanes.Stopped)
            {
                var lane = _kind == Lane.Demand ? _lanes.DemandLane : _lanes.PushLane;
                if (lane is null || lane.IsDisposed)
                {
                    lane = Reconnect(lane);
                    if (lane is null) continue;
                }
                Receive(lane);
            }
        }
        catch (Exception e) when (!_lanes.Stopped)
        {
            // A bug of ours (not the peer's bytes): say so; the fault thread stays, the VM waits.
            _lanes.Log?.Invoke($"{_kind} lane thread failed: {e}");
        }
    }

    /// <summary>Retires <paramref name="gone"/> (null: there was none yet) and opens a new lane; null: try again.</summary>
    private FrameConnection? Reconnect(FrameConnection? gone)
    {
        if (gone is not null)
        {
            _lanes.Retire(gone);
            // Forget it, so it is retired (its bytes counted) once.
            if (_kind == Lane.Demand) _lanes.DemandLane = null; else _lanes.PushLane = null;
            _lanes.CountReconnect();
            Thread.Sleep(_lanes.Options.ReconnectDelayMs);
        }
        FrameConnection? lane;
        try { lane = _lanes.TryConnect(_kind); }
        catch (IOException e) when (!_lanes.Stopped)
        {
            int errors = _lanes.CountLaneError();
            _lanes.Log?.Invoke($"{_kind} lane refused: {e.Message}; trying again");
            BackOff(errors);
            return null;
        }
        if (lane is null) { Thread.Sleep(_lanes.Options.ReconnectDelayMs); return null; }
        return Attach(lane) ? lane : null;
    }

    /// <summary>Makes an authenticated lane the current one of its kind; false if it broke meanwhile (retired).</summary>
    private bool Attach(FrameConnection lane)
    {
        try
        {
            if (_kind == Lane.Demand)
            {
                // The source sends a new demand lane the device state again from its first byte.
                _deviceState.NewLane();
                _lanes.DemandLane = lane;
                // Faults still waiting lost their request with the old lane: ask again.
                int n = _installer.CopyPending(_pending);
                if (n > 0) _requests.Send(_pending.AsSpan(0, n));
            }
            else
            {
                // Resume: the source skips every page we already have, and the good warm pages
                // being installed (the pager opens no push lane before the verdict).
                var have = FrameCodec.EncodeBitmap(_installer.Done);
                _warm.AddGoodTo(have.AsSpan(8));
                lane.Send(FrameType.Resume, have);
                _lanes.PushLane = lane;
                _completion.Reset();
            }
            _lanes.Log?.Invoke($"{_kind} lane connected");
            return true;
        }
        catch (IOException e) when (!_lanes.Stopped)
        {
            if (e is ProtocolException or AuthenticationFailedException)
            {
                _lanes.CountLaneError();
                _lanes.Log?.Invoke($"{_kind} lane refused after connecting: {e.Message}");
                Thread.Sleep(_lanes.Options.ReconnectDelayMs);
            }
            _lanes.Retire(lane);
            return false;
        }
    }

    /// <summary>Reads one frame and acts on it; a lane that breaks is closed, and the next turn of <see cref="Run"/> replaces it.</summary>
    private void Receive(FrameConnection lane)
    {
        try
        {
            var type = lane.ReadFrame();
            _frames.Take(type, lane);
            // The source believes it sent everything but pages are missing (sent on a lane
            // that died): reconnect, and the resume bitmap makes it send them again.
            // Not while the good warm pages go in: the resume counted them, the source rightly did not send them.
            if (_kind == Lane.Push && !_warm.Installing && _completion.Overdue(_installer.Done))
            {
                lane.Dispose();
            }
        }
        catch (IOException e) when (e is not ProtocolException and not AuthenticationFailedException)
        {
            if (!_lanes.Stopped) _lanes.Log?.Invoke($"{_kind} lane lost: {e.Message}; reconnecting");
            lane.Dispose();
        }
        catch (IOException e) when (!_lanes.Stopped)
        {
            // A frame that fails its checks was not installed; the lane it came on is
            // dropped and another one asked for. Never stop: after the commit point a
            // stopped pager is a VM that waits for ever (a rotated secret, a restarted
            // source of another session, one bad frame). Back off so a peer that lies on
            // every lane costs a connection per second, not a busy loop.
            int errors = _lanes.CountLaneError();
            _lanes.Log?.Invoke($"{_kind} lane dropped: {e.Message}; reconnecting");
            lane.Dispose();
            BackOff(errors);
        }
    }

    /// <summary>After a refusal: a pause that grows with the lane errors so far, up to a cap.</summary>
    private void BackOff(int errors) =>
        Thread.Sleep(Math.Min(5000, _lanes.Options.ReconnectDelayMs * Math.Min(errors, 25)));
}
