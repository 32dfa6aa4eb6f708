using System.Runtime.InteropServices;
using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>
/// Destination side of the warm-up: the pages the source sent while its VM still ran, held in
/// this process (not in QEMU's RAM: the guest could read one before the source says whether it
/// wrote it since) until the <see cref="FrameType.WarmVerdict"/> comes after the pause. Then the
/// good ones are installed (origin Warm) on a thread of their own once the VM runs, and the
/// stale ones dropped: the source sends those again. A fault before that goes to the source
/// like any other (its frozen copy is right), so nothing waits for the verdict but the push
/// lane, which must not skip a page we would drop.
/// </summary>
/// <remarks>
/// The holding buffer is one reservation of the RAM's size that the kernel backs only where a
/// page arrives (glibc maps a large allocation, and untouched anonymous memory is not
/// allocated); it is freed once the installs end. A page that cannot be held (no memory) is
/// simply not held: the source sends it again after the pause, as any page we lack.
/// </remarks>
internal sealed unsafe class WarmPages(long pageCount, int pageSize) : IDisposable
{
    private readonly object _lock = new();
    private readonly PageBitmap _held = new(pageCount), _zero = new(pageCount);
    private PageBitmap? _good;
    private byte[]? _staleBits;
    private byte* _buffer;
    private bool _noMemory, _disposed;
    private long _dropped;
    private PageInstaller? _installer;
    private int _installStarted, _startRequested, _abandoned;
    private readonly ManualResetEventSlim _applied = new(false);

    /// <summary>Warm pages held so far (data and zero).</summary>
    public long Held => _held.Count;

    /// <summary>Warm pages the verdict said the guest wrote after they were sent: dropped.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>True once the verdict was taken in (or none is needed: nothing held).</summary>
    public bool VerdictKnown => Volatile.Read(ref _good) is not null || _held.Count == 0;

    /// <summary>The good pages are being installed: pages the push lane's resume said we have are not all in yet.</summary>
    public bool Installing => Volatile.Read(ref _installStarted) == 1 && !_applied.IsSet;

    /// <summary>Holds a run of data pages from a Warm frame.</summary>
    public void Hold(long first, int count, byte* data)
    {
        lock (_lock)
        {
            if (_good is not null || _staleBits is not null) throw new ProtocolException("warm pages after the warm verdict");
            if (_disposed || _noMemory) return;
            if (_buffer is null)
            {
                try
                {
                    _buffer = (byte*)NativeMemory.Alloc((nuint)(pageCount * pageSize));
                }
                catch (OutOfMemoryException)
                {
                    _noMemory = true; // nothing held: every page comes after the pause
                    return;
                }
            }

            Buffer.MemoryCopy(data, _buffer + first * pageSize, (long)count * pageSize, (long)count * pageSize);
            for (long p = first; p < first + count; p++)
            {
                _held.TrySet(p);
            }
        }
    }

    /// <summary>Holds a run of pages a Warm ZeroPages frame said were all zero when sent.</summary>
    public void HoldZero(long first, int count)
    {
        lock (_lock)
        {
            if (_good is not null || _staleBits is not null) throw new ProtocolException("warm pages after the warm verdict");
            if (_disposed) return;
            for (long p = first; p < first + count; p++)
            {
                _held.TrySet(p);
                _zero.TrySet(p);
            }
        }
    }

    /// <summary>
    /// The verdict (a bitmap of stale pages), on the demand lane's thread: copied, and the good
    /// pages worked out on a thread of their own (a walk over every held page; the demand lane
    /// answers faults meanwhile). A verdict after the first (a new demand lane gets it again)
    /// changes nothing.
    /// </summary>
    public void TakeVerdict(ReadOnlySpan<byte> staleBits, PageInstaller installer)
    {
        byte[] stale;
        lock (_lock)
        {
            if (_staleBits is not null) return;
            stale = _staleBits = staleBits.ToArray();
            _installer = installer;
        }

        new Thread(() => Judge(stale)) { IsBackground = true, Name = "pager-warm-verdict" }.Start();
    }

    private void Judge(byte[] staleBits)
    {
        var good = new PageBitmap(pageCount);
        long dropped = 0;
        for (long p = _held.NextSet(0); p >= 0; p = _held.NextSet(p + 1))
        {
            if ((staleBits[(int)(p >> 3)] & (1 << (int)(p & 7))) != 0) dropped++;
            else good.TrySet(p);
        }

        Interlocked.Exchange(ref _dropped, dropped);
        Volatile.Write(ref _good, good);
        if (Volatile.Read(ref _startRequested) == 1) StartInstalls();
    }

    /// <summary>
    /// Adds the good warm pages to a Resume bitmap's bytes: the source need not push them. None
    /// once their installs failed: the next resume asks for them.
    /// </summary>
    public void AddGoodTo(Span<byte> bitmapBytes)
    {
        var good = Volatile.Read(ref _good);
        if (good is null || Volatile.Read(ref _abandoned) == 1) return;
        var bits = new byte[good.ByteLength];
        good.CopyTo(bits);
        for (int i = 0; i < bits.Length && i < bitmapBytes.Length; i++) bitmapBytes[i] |= bits[i];
    }

    /// <summary>
    /// Once the VM runs (with the push lane): installs the good pages on a thread of their own,
    /// now or as soon as the verdict is judged. Not as the verdict comes: it comes while QEMU
    /// still loads the device state, and installs beside the load made it take twice as long
    /// (measured: 91-99 ms against 44, under SCHED_IDLE too: UFFDIO_COPY takes QEMU's mmap lock,
    /// which its resume path waits for). Once.
    /// </summary>
    public void StartInstalls()
    {
        Volatile.Write(ref _startRequested, 1);
        var good = Volatile.Read(ref _good);
        if (good is null || _installer is not { } installer || Interlocked.Exchange(ref _installStarted, 1) == 1) return;
        new Thread(() => Install(good, installer)) { IsBackground = true, Name = "pager-warm" }.Start();
    }

    private void Install(PageBitmap good, PageInstaller installer)
    {
        try
        {
            long p = good.NextSet(0);
            while (p >= 0)
            {
                long first = p;
                bool zero = _zero.IsSet(p);
                int run = 1;
                while (run < 64 && first + run < pageCount && good.IsSet(first + run) && _zero.IsSet(first + run) == zero) run++;
                if (zero) installer.MarkZero(first, run);
                else installer.Install(first, run, _buffer + first * pageSize, PageOrigin.Warm);
                p = good.NextSet(first + run);
            }
        }
        catch (Exception e)
        {
            // The pager stopped (QEMU gone, the migration rolled back), or a copy failed (a full
            // RAM file system): the pages not in are no longer claimed by the push lane's resume,
            // whose next reconnect (the push completes with pages missing) asks for them.
            Volatile.Write(ref _abandoned, 1);
            Failure = e.Message;
        }
        finally
        {
            lock (_lock) Free();
            _applied.Set();
        }
    }

    /// <summary>Why the installs stopped early, if they did (diagnostics).</summary>
    public string? Failure { get; private set; }

    private void Free()
    {
        if (_buffer is not null) NativeMemory.Free(_buffer);
        _buffer = null;
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            // Installs under way hold no lock while copying: they free the buffer when they end.
            if (Volatile.Read(ref _installStarted) == 0 || _applied.IsSet) Free();
        }
    }
}
