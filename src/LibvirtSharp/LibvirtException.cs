using LibvirtSharp.Native;

namespace LibvirtSharp;

/// <summary>
/// A libvirt call failed. Carries what <c>virGetLastError</c> reported on the calling thread
/// (libvirt keeps the last error per thread, so it must be read before any other libvirt call).
/// </summary>
public sealed class LibvirtException : Exception
{
    /// <summary>virErrorNumber, e.g. VIR_ERR_NO_DOMAIN.</summary>
    public virErrorNumber Code { get; }

    /// <summary>virErrorDomain: the part of libvirt that raised it, e.g. VIR_FROM_QEMU.</summary>
    public virErrorDomain ErrorDomain { get; }

    public virErrorLevel Level { get; }

    /// <summary>libvirt's own message, unchanged.</summary>
    public string LibvirtMessage { get; }

    /// <summary>The libvirt function that failed.</summary>
    public string Operation { get; }

    public LibvirtException(string operation, virErrorNumber code, virErrorDomain domain, virErrorLevel level, string message)
        : base($"{operation}: {message}")
    {
        Operation = operation;
        Code = code;
        ErrorDomain = domain;
        Level = level;
        LibvirtMessage = message;
    }

    /// <summary>Builds the exception from this thread's last libvirt error and resets it.</summary>
    internal static unsafe LibvirtException FromLastError(string operation)
    {
        virError* e = Libvirt.virGetLastError();
        if (e is null)
            return new LibvirtException(operation, virErrorNumber.VIR_ERR_INTERNAL_ERROR, virErrorDomain.VIR_FROM_NONE,
                virErrorLevel.VIR_ERR_ERROR, "failed without a libvirt error");
        var ex = new LibvirtException(operation, (virErrorNumber)e->code, (virErrorDomain)e->domain, (virErrorLevel)e->level,
            LibvirtStrings.Borrow(e->message) ?? "(no message)");
        Libvirt.virResetLastError();
        return ex;
    }

    internal static void ThrowIfNegative(int rc, string operation)
    {
        if (rc < 0) throw FromLastError(operation);
    }

    internal static nint ThrowIfNull(nint ptr, string operation) => ptr == 0 ? throw FromLastError(operation) : ptr;
}
