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
    private PageInstaller? _installer;

    public GuideMemory(FrozenRam ram, PageServer push)
    {
        _ram = ram;
        _push = push;
        Log = new GuideLog(ram.PageCount);
        // One page, pinned once: the fault thread reads into it and copies it in (no per-page allocation).
        _buffer = GC.AllocateUninitializedArray<byte>(ram.PageSize, pinned: true);
    }

    public GuideLog Log { get; }

    public void Attach(PageInstaller installer) => _installer = installer;

    /// <summary>On the guide's fault thread: read, install, log, queue for the push lane.</summary>
    public void RequestPages(ReadOnlySpan<long> pages)
    {
        var installer = _installer ?? throw new InvalidOperationException("guide memory not attached");
        Span<long> first = stackalloc long[pages.Length];
        int n = 0;
        fixed (byte* data = _buffer)
        {
            foreach (long page in pages)
            {
                _ram.Read(page, 1, _buffer);
                installer.Install(page, 1, data, PageOrigin.Demand);
                if (Log.Append(page))
                {
                    first[n++] = page;
                }
            }
        }

        if (n > 0)
        {
            _push.EnqueuePush(first[..n]);
        }
    }

    public void Dispose() => _installer?.Dispose();
}
