using System.Runtime.InteropServices;

namespace LibvirtSharp.Native;

/// <summary>
/// The few functions the generator skips (callback arguments, see Generated/Skipped.md) that the
/// safe layer needs. Callbacks are unmanaged function pointers to <c>[UnmanagedCallersOnly]</c>
/// statics, so nothing managed has to be kept alive for the pointer itself; the opaque data is a
/// GCHandle released by libvirt's free callback.
/// </summary>
public static unsafe partial class HandBound
{
    /// <summary><c>void virSetErrorFunc(void *userData, virErrorFunc handler)</c>: a NULL handler restores libvirt's default, which prints every error to stderr.</summary>
    [LibraryImport(Libvirt.Library)]
    public static partial void virSetErrorFunc(nint userData, delegate* unmanaged<nint, virError*, void> handler);

    /// <summary>
    /// <c>int virConnectDomainEventRegisterAny(virConnectPtr conn, virDomainPtr dom, int eventID,
    /// virConnectDomainEventGenericCallback cb, void *opaque, virFreeCallback freecb)</c>.
    /// <paramref name="cb"/> must have the signature libvirt defines for <paramref name="eventID"/>; libvirt
    /// casts it back, so the type here is only the generic one.
    /// </summary>
    [LibraryImport(Libvirt.Library)]
    public static partial int virConnectDomainEventRegisterAny(nint conn, nint dom, int eventID, nint cb, nint opaque,
        delegate* unmanaged<nint, void> freecb);

    /// <summary>
    /// <c>int virConnectDomainQemuMonitorEventRegister(virConnectPtr conn, virDomainPtr dom, const char *event,
    /// virConnectDomainQemuMonitorEventCallback cb, void *opaque, virFreeCallback freecb, unsigned int flags)</c>
    /// (libvirt-qemu): the generator leaves it out for its callback type.
    /// </summary>
    [LibraryImport(LibvirtQemu.Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int virConnectDomainQemuMonitorEventRegister(nint conn, nint dom, string? @event,
        delegate* unmanaged<nint, nint, byte*, long, uint, byte*, nint, void> cb, nint opaque, delegate* unmanaged<nint, void> freecb, uint flags);
}
