using Microsoft.Win32.SafeHandles;
using LibvirtSharp.Native;

namespace LibvirtSharp;

/// <summary>A virDomainPtr; releasing it calls virDomainFree (the domain itself is untouched).</summary>
public sealed class DomainHandle : SafeHandleZeroOrMinusOneIsInvalid
{
    public DomainHandle() : base(ownsHandle: true) { }

    internal DomainHandle(nint ptr) : base(ownsHandle: true) => SetHandle(ptr);

    protected override bool ReleaseHandle() => Libvirt.virDomainFree(handle) >= 0;
}
