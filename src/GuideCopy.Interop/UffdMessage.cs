using System.Runtime.InteropServices;

namespace GuideCopy.Interop;

/// <summary>One <c>struct uffd_msg</c> as read from a userfaultfd (32 bytes, same layout).</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
public struct UffdMessage
{
    public const byte PageFault = 0x12;
    public const byte Fork = 0x13;
    public const byte Remap = 0x14;
    public const byte Remove = 0x15;
    public const byte Unmap = 0x16;

    [FieldOffset(0)] public byte Event;
    /// <summary>arg.pagefault.flags (bit 0: write fault).</summary>
    [FieldOffset(8)] public ulong Flags;
    /// <summary>arg.pagefault.address, or arg.remove.start for REMOVE/UNMAP.</summary>
    [FieldOffset(16)] public ulong Address;
    [FieldOffset(8)] public ulong RemoveStart;
    [FieldOffset(16)] public ulong RemoveEnd;
}
