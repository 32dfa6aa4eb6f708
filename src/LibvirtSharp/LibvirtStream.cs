using LibvirtSharp.Native;

namespace LibvirtSharp;

/// <summary>A blocking virStreamPtr: data to or from the daemon (console, migration tunnels, volume upload...).</summary>
public sealed unsafe class LibvirtStream : IDisposable
{
    private readonly StreamHandle _handle;

    internal LibvirtStream(StreamHandle handle) => _handle = handle;

    public StreamHandle Handle => _handle;

    /// <summary>virStreamSend; returns the bytes sent (may be fewer than given).</summary>
    public int Send(ReadOnlySpan<byte> data)
    {
        using var s = _handle.Lease();
        fixed (byte* p = data)
        {
            int n = Libvirt.virStreamSend(s.Pointer, p, (nuint)data.Length);
            LibvirtException.ThrowIfNegative(n, nameof(Libvirt.virStreamSend));
            return n;
        }
    }

    /// <summary>virStreamRecv; returns 0 at end of stream.</summary>
    public int Receive(Span<byte> buffer)
    {
        using var s = _handle.Lease();
        fixed (byte* p = buffer)
        {
            int n = Libvirt.virStreamRecv(s.Pointer, p, (nuint)buffer.Length);
            LibvirtException.ThrowIfNegative(n, nameof(Libvirt.virStreamRecv));
            return n;
        }
    }

    public void Finish()
    {
        using var s = _handle.Lease();
        LibvirtException.ThrowIfNegative(Libvirt.virStreamFinish(s.Pointer), nameof(Libvirt.virStreamFinish));
    }

    public void Abort()
    {
        using var s = _handle.Lease();
        LibvirtException.ThrowIfNegative(Libvirt.virStreamAbort(s.Pointer), nameof(Libvirt.virStreamAbort));
    }

    public void Dispose() => _handle.Dispose();
}
