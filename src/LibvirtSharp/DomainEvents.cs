using System.Diagnostics;
using System.Runtime.InteropServices;
using LibvirtSharp.Native;

namespace LibvirtSharp;

/// <summary>A lifecycle event (VIR_DOMAIN_EVENT_ID_LIFECYCLE); <see cref="Detail"/> is the virDomainEvent*DetailType for <see cref="Event"/>.</summary>
/// <param name="Timestamp">Stopwatch.GetTimestamp() when this process received it, for intervals between events.</param>
public readonly record struct DomainLifecycleEvent(string DomainName, virDomainEventType Event, int Detail, long Timestamp);

/// <summary>A pre-copy pass began (VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION, source side).</summary>
public readonly record struct MigrationIterationEvent(string DomainName, int Iteration, long Timestamp);

/// <summary>A QMP event as QEMU sent it, passed through by libvirt (virConnectDomainQemuMonitorEventRegister).</summary>
/// <param name="Details">The event's "data" member as JSON text, or null.</param>
/// <param name="Timestamp">Stopwatch.GetTimestamp() when this process received it.</param>
/// <param name="EmittedAt">When QEMU emitted it, by QEMU's host clock (the event's own "timestamp"): free of libvirt's delivery delay.</param>
public readonly record struct QemuMonitorEvent(string DomainName, string Event, string? Details, long Timestamp, DateTimeOffset EmittedAt);

/// <summary>
/// Domain event registrations (virConnectDomainEventRegisterAny). The managed handler is held by
/// a GCHandle passed as libvirt's opaque pointer and freed by libvirt's free callback, so it lives
/// exactly as long as the registration. Handlers run on the <see cref="EventLoop"/> thread.
/// </summary>
public static unsafe class DomainEvents
{
    /// <summary>Calls <paramref name="handler"/> for lifecycle events of <paramref name="domain"/> (null: every domain).</summary>
    public static IDisposable OnLifecycle(Connection connection, Domain? domain, Action<DomainLifecycleEvent> handler) =>
        Register(connection, domain, virDomainEventID.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
            (nint)(delegate* unmanaged<nint, nint, int, int, nint, int>)&Lifecycle, handler);

    /// <summary>Calls <paramref name="handler"/> at each pre-copy iteration of <paramref name="domain"/> (null: every domain).</summary>
    public static IDisposable OnMigrationIteration(Connection connection, Domain? domain, Action<MigrationIterationEvent> handler) =>
        Register(connection, domain, virDomainEventID.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION,
            (nint)(delegate* unmanaged<nint, nint, int, nint, void>)&MigrationIteration, handler);

    /// <summary>
    /// Calls <paramref name="handler"/> for QMP events named <paramref name="eventName"/> of
    /// <paramref name="domain"/> (null: every domain), as QEMU emits them: faster than asking (a QMP command through
    /// libvirt takes a domain job and a monitor round trip; an event is pushed as it comes).
    /// </summary>
    public static IDisposable OnQemuMonitorEvent(Connection connection, Domain? domain, string eventName, Action<QemuMonitorEvent> handler)
    {
        var gc = GCHandle.Alloc(handler);
        using var c = connection.Handle.Lease();
        int callbackId;
        if (domain is null)
        {
            callbackId = HandBound.virConnectDomainQemuMonitorEventRegister(c.Pointer, 0, eventName, &QemuMonitor, GCHandle.ToIntPtr(gc), &FreeHandler, 0);
        }
        else
        {
            using var d = domain.Handle.Lease();
            callbackId = HandBound.virConnectDomainQemuMonitorEventRegister(c.Pointer, d.Pointer, eventName, &QemuMonitor, GCHandle.ToIntPtr(gc), &FreeHandler, 0);
        }

        if (callbackId < 0)
        {
            gc.Free();
            throw LibvirtException.FromLastError(nameof(HandBound.virConnectDomainQemuMonitorEventRegister));
        }

        return new Registration(connection, callbackId, qemu: true);
    }

    private static Registration Register(Connection connection, Domain? domain, virDomainEventID id, nint callback, Delegate handler)
    {
        var gc = GCHandle.Alloc(handler);
        using var c = connection.Handle.Lease();
        int callbackId;
        if (domain is null)
        {
            callbackId = HandBound.virConnectDomainEventRegisterAny(c.Pointer, 0, (int)id, callback, GCHandle.ToIntPtr(gc), &FreeHandler);
        }
        else
        {
            using var d = domain.Handle.Lease();
            callbackId = HandBound.virConnectDomainEventRegisterAny(c.Pointer, d.Pointer, (int)id, callback, GCHandle.ToIntPtr(gc), &FreeHandler);
        }
        if (callbackId < 0)
        {
            // libvirt calls freecb only for a registration that succeeded.
            gc.Free();
            throw LibvirtException.FromLastError(nameof(HandBound.virConnectDomainEventRegisterAny));
        }
        return new Registration(connection, callbackId);
    }

    private sealed class Registration(Connection connection, int callbackId, bool qemu = false) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            using var c = connection.Handle.Lease();
            // libvirt frees the opaque GCHandle through FreeHandler once no callback is in flight.
            if (qemu)
            {
                LibvirtException.ThrowIfNegative(LibvirtQemu.virConnectDomainQemuMonitorEventDeregister(c.Pointer, callbackId),
                    nameof(LibvirtQemu.virConnectDomainQemuMonitorEventDeregister));
                return;
            }

            LibvirtException.ThrowIfNegative(Libvirt.virConnectDomainEventDeregisterAny(c.Pointer, callbackId),
                nameof(Libvirt.virConnectDomainEventDeregisterAny));
        }
    }

    [UnmanagedCallersOnly]
    private static int Lifecycle(nint conn, nint dom, int evt, int detail, nint opaque)
    {
        long now = Stopwatch.GetTimestamp();
        Dispatch(opaque, (Action<DomainLifecycleEvent> h) => h(new DomainLifecycleEvent(NameOf(dom), (virDomainEventType)evt, detail, now)));
        return 0;
    }

    [UnmanagedCallersOnly]
    private static void MigrationIteration(nint conn, nint dom, int iteration, nint opaque)
    {
        long now = Stopwatch.GetTimestamp();
        Dispatch(opaque, (Action<MigrationIterationEvent> h) => h(new MigrationIterationEvent(NameOf(dom), iteration, now)));
    }

    [UnmanagedCallersOnly]
    private static void QemuMonitor(nint conn, nint dom, byte* evt, long seconds, uint micros, byte* details, nint opaque)
    {
        long now = Stopwatch.GetTimestamp();
        string name = LibvirtStrings.Borrow((nint)evt) ?? "";
        string? data = LibvirtStrings.Borrow((nint)details);
        var emitted = DateTimeOffset.FromUnixTimeSeconds(seconds).AddTicks(micros * TimeSpan.TicksPerMicrosecond);
        Dispatch(opaque, (Action<QemuMonitorEvent> h) => h(new QemuMonitorEvent(NameOf(dom), name, data, now, emitted)));
    }

    [UnmanagedCallersOnly]
    private static void FreeHandler(nint opaque) => GCHandle.FromIntPtr(opaque).Free();

    private static void Dispatch<T>(nint opaque, Action<T> invoke) where T : Delegate
    {
        // An exception must never unwind into libvirt's C frames: it would kill the process.
        try
        {
            if (GCHandle.FromIntPtr(opaque).Target is T handler) invoke(handler);
        }
        catch (Exception e)
        {
            Trace.TraceError($"libvirt event handler failed: {e}");
        }
    }

    // The domain pointer is only valid during the callback; its name is copied out.
    private static string NameOf(nint dom) => LibvirtStrings.Borrow(Libvirt.virDomainGetName(dom)) ?? "";
}
