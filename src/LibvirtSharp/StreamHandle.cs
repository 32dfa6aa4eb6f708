using Microsoft.Win32.SafeHandles;
using LibvirtSharp.Native;

namespace LibvirtSharp;

/// <summary>A virStreamPtr; releasing it calls virStreamFree.</summary>
public sealed class StreamHandle : SafeHandleZeroOrMinusOneIsInvalid
{
    public StreamHandle() : base(ownsHandle: true) { }

    internal StreamHandle(nint ptr) : base(ownsHandle: true) => SetHandle(ptr);

    protected override bool ReleaseHandle() => Libvirt.virStreamFree(handle) >= 0;
}
