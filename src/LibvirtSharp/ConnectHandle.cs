using Microsoft.Win32.SafeHandles;
using LibvirtSharp.Native;

namespace LibvirtSharp;

/// <summary>A virConnectPtr; releasing it calls virConnectClose (drops one reference).</summary>
public sealed class ConnectHandle : SafeHandleZeroOrMinusOneIsInvalid
{
    public ConnectHandle() : base(ownsHandle: true) { }

    internal ConnectHandle(nint ptr) : base(ownsHandle: true) => SetHandle(ptr);

    protected override bool ReleaseHandle() => Libvirt.virConnectClose(handle) >= 0;
}
