namespace GuideCopy.Transport;

/// <summary>
/// The zero map on the demand lane: the file's holes, which the destination then resolves
/// itself. Known at once on a frozen file; on an armed one, looked for (the kernel walks the
/// file's page cache) once the first push lane comes after the freeze, on a thread of their
/// own, then sent on whichever demand lane is up; a demand lane that comes later gets it on connect.
/// </summary>
internal sealed class HoleAnnouncer
{
    private readonly ServedRam _served;
    private readonly object _zeroMapLock = new();
    private volatile bool _zeroMapReady;
    private int _holeScanStarted;

    public HoleAnnouncer(ServedRam served)
    {
        _served = served;
        _zeroMapReady = !served.Options.Armed; // not armed: FrozenRam scanned the holes when it opened the file
    }

    /// <summary>
    /// Makes <paramref name="lane"/> the demand lane; true when the zero map is known already (then
    /// the caller sends it; otherwise <see cref="ScanHolesThenAnnounce"/> sends it on this lane).
    /// </summary>
    public bool AttachDemandLane(FrameConnection lane)
    {
        lock (_zeroMapLock)
        {
            _served.DemandLane = lane;
            return _zeroMapReady;
        }
    }

    public void StartHoleScanOnce()
    {
        if (_zeroMapReady || Interlocked.Exchange(ref _holeScanStarted, 1) != 0) return;
        new Thread(ScanHolesThenAnnounce) { IsBackground = true, Name = "pages-holes" }.Start();
    }

    private void ScanHolesThenAnnounce()
    {
        try
        {
            _served.Ram.ScanHoles();
        }
        catch (IOException e)
        {
            _served.Log?.Invoke($"holes not found ({e.Message}): zero pages are announced as they are read");
            return;
        }
        FrameConnection? lane;
        lock (_zeroMapLock)
        {
            _zeroMapReady = true;
            lane = _served.DemandLane;
        }
        try { lane?.Send(FrameType.ZeroMap, FrameCodec.EncodeBitmap(_served.Ram.ZeroPages)); }
        catch (IOException) { lane!.Dispose(); } // the next demand lane gets it on connect
    }
}
