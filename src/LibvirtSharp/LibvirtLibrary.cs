using System.Runtime.InteropServices;
using LibvirtSharp.Native;

namespace LibvirtSharp;

/// <summary>Process-wide libvirt setup, done once before the first connection.</summary>
public static unsafe class LibvirtLibrary
{
    private static readonly Lock Gate = new();
    private static bool _initialized;

    /// <summary>
    /// Calls virInitialize, replaces libvirt's default error handler, which would print every
    /// error (also the expected ones, like a lookup miss) to stderr (errors reach callers as
    /// <see cref="LibvirtException"/> instead), and starts the <see cref="EventLoop"/>, which
    /// has to exist before the first connection for events and keepalive to work.
    /// </summary>
    public static void EnsureInitialized()
    {
        lock (Gate)
        {
            if (_initialized) return;
            if (Libvirt.virInitialize() < 0) throw LibvirtException.FromLastError(nameof(Libvirt.virInitialize));
            HandBound.virSetErrorFunc(0, &IgnoreError);
            EventLoop.EnsureRunning();
            _initialized = true;
        }
    }

    /// <summary>The libvirt library version as major*1,000,000 + minor*1,000 + micro.</summary>
    public static ulong Version
    {
        get
        {
            nuint lib = 0, type = 0;
            LibvirtException.ThrowIfNegative(Libvirt.virGetVersion(&lib, null, &type), nameof(Libvirt.virGetVersion));
            return lib;
        }
    }

    [UnmanagedCallersOnly]
    private static void IgnoreError(nint userData, virError* error) { }
}
