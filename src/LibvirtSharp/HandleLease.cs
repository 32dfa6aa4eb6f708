using System.Runtime.InteropServices;

namespace LibvirtSharp;

/// <summary>
/// Keeps a SafeHandle referenced while its raw pointer is passed to libvirt, so a concurrent
/// Dispose cannot free the object in the middle of a call. Use with <c>using var h = handle.Lease();</c>.
/// </summary>
internal ref struct HandleLease
{
    private readonly SafeHandle _handle;
    private bool _added;

    public HandleLease(SafeHandle handle)
    {
        _handle = handle;
        _added = false;
        handle.DangerousAddRef(ref _added);
        Pointer = handle.DangerousGetHandle();
    }

    public nint Pointer { get; }

    public void Dispose()
    {
        if (_added) _handle.DangerousRelease();
        _added = false;
    }
}

internal static class HandleLeaseExtensions
{
    public static HandleLease Lease(this SafeHandle handle) => new(handle);
}
