using System.Buffers.Binary;
using System.Net.Sockets;
using GuideCopy.Interop;

namespace GuideCopy.MemoryPlane;

/// <summary>
/// One RAM mapping handed over by the shim: its uffd (ours to own), where it is, and the shim
/// connection. EOF on that connection is how we learn QEMU exited: a uffd never signals HUP.
/// </summary>
public sealed class ShimRegistration : IDisposable
{
    private readonly Socket _connection;
    private int _acked;

    internal ShimRegistration(Socket connection, Userfaultfd uffd, ShimHello hello)
    {
        _connection = connection;
        Uffd = uffd;
        Hello = hello;
    }

    public Userfaultfd Uffd { get; }
    public ShimHello Hello { get; }
    public ulong Base => Hello.Base;
    public ulong Length => Hello.Length;
    public int PageSize => Hello.PageSize;
    public string RamPath => Hello.RamPath;
    public int QemuPid => Hello.Pid;
    /// <summary>True when the shim hands the uffd again to a restarted agent.</summary>
    public bool IsResend => Hello.IsResend;
    public long PageCount => (long)(Length / (ulong)PageSize);
    /// <summary>UFFDIO_ZEROPAGE allowed on the range (not on hugetlbfs).</summary>
    public bool CanZeroPage => (Hello.Ioctls & Userfaultfd.IoctlZeropageBit) != 0;

    /// <summary>The shim connection's fd: readable with 0 bytes = QEMU exited.</summary>
    public int ConnectionFd => (int)_connection.Handle;

    /// <summary>Lets QEMU go on past its mmap. Idempotent.</summary>
    public void Ack()
    {
        if (Interlocked.Exchange(ref _acked, 1) == 0) SendCommand(ShimHello.CommandAck);
    }

    /// <summary>Every page is installed: the shim closes its uffd copy (the caller closes ours).</summary>
    public bool Release() => SendCommand(ShimHello.CommandRelease);

    private bool SendCommand(uint command)
    {
        Span<byte> m = stackalloc byte[16];
        m.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(m, ShimHello.AgentMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(m[4..], command);
        return FdPassing.Send(ConnectionFd, m);
    }

    public void Dispose()
    {
        Uffd.Dispose();
        _connection.Dispose();
    }
}
