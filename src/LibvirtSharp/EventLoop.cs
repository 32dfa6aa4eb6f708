using LibvirtSharp.Native;

namespace LibvirtSharp;

/// <summary>
/// libvirt's default event loop (virEventRegisterDefaultImpl) run on one dedicated background
/// thread. It must be registered before the first connection is opened: the remote driver only
/// hooks a connection's socket into an event loop that exists at open time, and without it no
/// domain event or keepalive is ever delivered. <see cref="LibvirtLibrary.EnsureInitialized"/>
/// starts it, so every <see cref="Connection"/> can deliver events.
/// </summary>
public static class EventLoop
{
    private static readonly Lock Gate = new();
    private static Thread? _thread;

    public static bool IsRunning => _thread is not null;

    internal static void EnsureRunning()
    {
        lock (Gate)
        {
            if (_thread is not null) return;
            LibvirtException.ThrowIfNegative(Libvirt.virEventRegisterDefaultImpl(), nameof(Libvirt.virEventRegisterDefaultImpl));
            _thread = new Thread(Run) { IsBackground = true, Name = "libvirt event loop" };
            _thread.Start();
        }
    }

    private static void Run()
    {
        // One iteration polls every registered handle and timer once; callbacks run here, so
        // event handlers must be short. The thread lives as long as the process (libvirt has no
        // way to unregister the default implementation).
        while (true)
        {
            if (Libvirt.virEventRunDefaultImpl() < 0)
            {
                Libvirt.virResetLastError();
                Thread.Sleep(10);
            }
        }
    }
}
