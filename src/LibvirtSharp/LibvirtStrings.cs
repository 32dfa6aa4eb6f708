using System.Runtime.InteropServices;

namespace LibvirtSharp;

/// <summary>
/// The two kinds of string libvirt returns: "char *" the caller owns and frees with free()
/// (libvirt allocates with g_malloc, which is malloc since GLib 2.46), and "const char *" it keeps.
/// </summary>
internal static unsafe class LibvirtStrings
{
    public static string? Borrow(nint p) => p == 0 ? null : Marshal.PtrToStringUTF8(p);

    public static string? Take(nint p)
    {
        if (p == 0) return null;
        try { return Marshal.PtrToStringUTF8(p); }
        finally { NativeMemory.Free((void*)p); }
    }
}
