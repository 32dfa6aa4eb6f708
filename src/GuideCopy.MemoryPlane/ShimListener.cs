using System.Net.Sockets;
using GuideCopy.Interop;
using Mono.Unix.Native;

namespace GuideCopy.MemoryPlane;

/// <summary>
/// The agent end of the shim socket (SOCK_SEQPACKET, so one recvmsg is one registration with
/// its SCM_RIGHTS fd). Registrations come back un-acked: QEMU waits in mmap until
/// <see cref="ShimRegistration.Ack"/> (the Pager acks when it owns the uffd). A peer that the
/// <see cref="ShimPeerRules"/> refuse (wrong uid or pid, an fd that is no userfaultfd, a RAM
/// file that is not the domain's) is logged and closed, and the listener waits for the next.
/// </summary>
public sealed class ShimListener : IDisposable
{
    /// <summary>How long a connected peer has to send its hello.</summary>
    private const int HelloTimeoutMs = 5000;

    private readonly Socket _socket;
    private readonly ShimPeerRules _rules;

    /// <summary>A listener for processes of this user only (tools and tests: see <see cref="ShimPeerRules.SameUser"/>).</summary>
    public ShimListener(string socketPath) : this(socketPath, ShimPeerRules.SameUser())
    {
    }

    public ShimListener(string socketPath, ShimPeerRules rules)
    {
        SocketPath = socketPath;
        _rules = rules;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(socketPath))!);
        if (File.Exists(socketPath)) File.Delete(socketPath);
        _socket = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        _socket.Bind(new UnixDomainSocketEndPoint(socketPath));
        // connect(2) on a UNIX socket needs write permission on the socket file (unix(7)): the
        // group is QEMU's, so no other local user may even try; the checks below are for the rest.
        if (rules.SocketGid is { } gid && Syscall.chown(socketPath, -1, (int)gid) != 0)
        {
            throw new IOException($"chown {socketPath} to group {gid}: {Stdlib.GetLastError()}");
        }

        File.SetUnixFileMode(socketPath, rules.SocketGid is null
            ? UnixFileMode.UserRead | UnixFileMode.UserWrite
            : UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite);
        _socket.Listen(16);
    }

    public string SocketPath { get; }

    /// <summary>Waits for the next shim the rules accept; every other peer is refused and closed.</summary>
    public async Task<ShimRegistration> AcceptAsync(CancellationToken ct = default)
    {
        var buffer = new byte[ShimHello.MaxMessage];
        while (true)
        {
            Socket conn = await _socket.AcceptAsync(ct).ConfigureAwait(false);
            int fd = -1;
            PeerCredentials peer = default;
            try
            {
                peer = PeerCredentials.Of((int)conn.Handle);
                // Refused before anything is read: an fd in flight that is never received is
                // closed by the kernel with the socket.
                if (_rules.RefuseBeforeHello(peer) is { } wrongUser) throw new InvalidDataException(wrongUser);
                var deadline = Environment.TickCount64 + HelloTimeoutMs;
                int n = ReceiveHello(conn, buffer, deadline, out fd, ct);
                if (n <= 0) throw new InvalidDataException("no registration from the shim");
                if (fd < 0) throw new InvalidDataException("shim message without a uffd");
                if (!Userfaultfd.IsUserfaultfd(fd, out string kind)) throw new InvalidDataException($"the fd it sent is {kind}, not a userfaultfd");
                if (!ShimHello.TryParse(buffer.AsSpan(0, n), out var hello, out var error)) throw new InvalidDataException(error);
                if (_rules.RefuseHello(peer, hello) is { } refusal) throw new InvalidDataException(refusal);
                return new ShimRegistration(conn, Userfaultfd.FromFd(fd), hello);
            }
            catch (Exception e) when (e is InvalidDataException or IOException)
            {
                if (fd >= 0) FdPassing.CloseFd(fd);
                conn.Dispose();
                Rejected?.Invoke($"{peer}: {e.Message}");
                ct.ThrowIfCancellationRequested();
            }
        }
    }

    /// <summary>A shim sends its hello right after connect; the wait is bounded so a stray client cannot block us.</summary>
    private static int ReceiveHello(Socket conn, byte[] buffer, long deadline, out int fd, CancellationToken ct)
    {
        fd = -1;
        var entry = new UnixPoll.Entry[] { new((int)conn.Handle, UnixPoll.In) };
        int n = -1;
        while (n < 0 && Environment.TickCount64 < deadline && !ct.IsCancellationRequested)
        {
            if (UnixPoll.Wait(entry, 100) > 0) n = FdPassing.Receive((int)conn.Handle, buffer, out fd, dontWait: true);
        }

        return n;
    }

    /// <summary>Called with the peer and the reason when a connection is refused.</summary>
    public Action<string>? Rejected { get; set; }

    public void Dispose()
    {
        _socket.Dispose();
        try { File.Delete(SocketPath); } catch (IOException) { }
    }
}
