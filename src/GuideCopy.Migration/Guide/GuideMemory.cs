using GuideCopy.MemoryPlane;
using GuideCopy.Transport;

namespace GuideCopy.Migration.Guide;

/// <summary>
/// Serves the guide's page faults from the frozen source RAM file, in microseconds and on the
/// source host, and turns each first touch into the push order: the guide runs the VM's own
/// code a little ahead of the destination, so the order it touches pages in is the order the
/// destination will need them. The guide's own memory is never read for the destination: the
/// page server sends from the frozen file, so the guide's writes never leave the host.
/// </summary>
public sealed unsafe class GuideMemory : IDemandSink, IDisposable
{
    private readonly FrozenRam _ram;
    private readonly PageServer _push;
    private readonly byte[] _buffer;
    private readonly ReadAheadStreams _readAhead;
    private PageInstaller? _installer;

    public GuideMemory(FrozenRam ram, PageServer push, int maxReadAhead = 1)
    {
        _ram = ram;
        _push = push;
        _readAhead = new ReadAheadStreams(maxReadAhead);
        Log = new GuideLog(ram.PageCount);
        // Pinned once: the fault thread reads into it and copies it in (no per-page allocation).
        _buffer = GC.AllocateUninitializedArray<byte>(_readAhead.MaxPages * ram.PageSize, pinned: true);
    }

    public GuideLog Log { get; }

    public void Attach(PageInstaller installer) => _installer = installer;

    /// <summary>
    /// On the guide's fault thread: read, install, log, queue for the push lane.
    /// <para>
    /// Read-ahead per stream (<see cref="ReadAheadStreams"/>), as the kernel's page cache does for
    /// a file read sequentially. Every guide fault costs a round trip through this thread and a
    /// reschedule of the guide's vCPU, and on a source host whose CPU also pushes at line rate
    /// that, not the guest's code, limited the guide: without read-ahead it fell behind the
    /// destination and was stopped (docs/tuning.md, "Read-ahead per stream"). A sequential guest then costs one fault per run; a guest touching pages at
    /// random keeps runs of one, so its log stays exactly its touches. Pages of a run are logged
    /// in address order, which is the order a sequential guest touches them next.
    /// </para>
    /// </summary>
    public void RequestPages(ReadOnlySpan<long> pages)
    {
        var installer = _installer ?? throw new InvalidOperationException("guide memory not attached");
        Span<long> first = stackalloc long[pages.Length * _readAhead.MaxPages];
        int n = 0;
        fixed (byte* data = _buffer)
        {
            foreach (long page in pages)
            {
                int size = _readAhead.SizeFor(page);
                // The run stops at the first page already there: it was logged when it came.
                int run = 1;
                while (run < size && page + run < _ram.PageCount && !installer.Done.IsSet(page + run)) run++;
                _ram.Read(page, run, _buffer.AsSpan(0, run * _ram.PageSize));
                installer.Install(page, run, data, PageOrigin.Demand);
                for (int i = 0; i < run; i++)
                {
                    if (Log.Append(page + i))
                    {
                        first[n++] = page + i;
                    }
                }

                _readAhead.Installed(page + run);
            }
        }

        if (n > 0)
        {
            _push.EnqueuePush(first[..n]);
        }
    }

    public void Dispose() => _installer?.Dispose();
}
