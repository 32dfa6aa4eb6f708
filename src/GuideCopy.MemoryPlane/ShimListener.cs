using System.Net.Sockets;
using GuideCopy.Interop;

namespace GuideCopy.MemoryPlane;

/// <summary>
/// The agent end of the shim socket (SOCK_SEQPACKET, so one recvmsg is one registration with
/// its SCM_RIGHTS fd). Registrations come back un-acked: QEMU waits in mmap until
/// <see cref="ShimRegistration.Ack"/> (the Pager acks when it owns the uffd).
/// </summary>
public sealed class ShimListener : IDisposable
{
    private readonly Socket _socket;

    public ShimListener(string socketPath)
    {
        SocketPath = socketPath;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(socketPath))!);
        if (File.Exists(socketPath)) File.Delete(socketPath);
        _socket = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        _socket.Bind(new UnixDomainSocketEndPoint(socketPath));
        // QEMU started by libvirt runs as libvirt-qemu: it must be able to connect.
        File.SetUnixFileMode(socketPath, (UnixFileMode)0x1B6 /* 0666 */);
        _socket.Listen(16);
    }

    public string SocketPath { get; }

    /// <summary>Waits for the next shim; a malformed hello is answered by closing the connection.</summary>
    public async Task<ShimRegistration> AcceptAsync(CancellationToken ct = default)
    {
        var buffer = new byte[ShimHello.MaxMessage];
        while (true)
        {
            Socket conn = await _socket.AcceptAsync(ct).ConfigureAwait(false);
            int fd = -1;
            try
            {
                // A shim sends its hello right after connect; bound the wait so a stray client cannot block us.
                var entry = new UnixPoll.Entry[] { new((int)conn.Handle, UnixPoll.In) };
                int n = -1;
                var deadline = Environment.TickCount64 + 5000;
                while (n < 0 && Environment.TickCount64 < deadline && !ct.IsCancellationRequested)
                {
                    if (UnixPoll.Wait(entry, 100) > 0) n = FdPassing.Receive((int)conn.Handle, buffer, out fd, dontWait: true);
                }
                if (n <= 0) throw new InvalidDataException("no registration from the shim");
                if (fd < 0) throw new InvalidDataException("shim message without a uffd");
                if (!ShimHello.TryParse(buffer.AsSpan(0, n), out var hello, out var error)) throw new InvalidDataException(error);
                return new ShimRegistration(conn, Userfaultfd.FromFd(fd), hello);
            }
            catch (Exception e) when (e is InvalidDataException or IOException)
            {
                if (fd >= 0) FdPassing.CloseFd(fd);
                conn.Dispose();
                Rejected?.Invoke(e.Message);
                ct.ThrowIfCancellationRequested();
            }
        }
    }

    /// <summary>Called with the reason when a connection is refused (bad hello).</summary>
    public Action<string>? Rejected { get; set; }

    public void Dispose()
    {
        _socket.Dispose();
        try { File.Delete(SocketPath); } catch (IOException) { }
    }
}
