using GuideCopy.Interop;
using Mono.Unix.Native;

namespace GuideCopy.MemoryPlane;

/// <summary>
/// Who may hand a <see cref="ShimListener"/> a userfaultfd, and for which RAM file. Everything
/// here comes from the kernel or from the agent's own knowledge of the domain, never from the
/// peer: a uffd of the wrong process would let its owner feed or read pages we think are the
/// guest's, and a RAM path the peer names would make the agent (root) open any file.
/// </summary>
public sealed class ShimPeerRules
{
    /// <summary>The uid the peer must have (SO_PEERCRED): the user libvirt runs QEMU as.</summary>
    public required uint PeerUid { get; init; }

    /// <summary>Group of the socket file (mode 0660); null: the listener's own, mode 0600.</summary>
    public uint? SocketGid { get; init; }

    /// <summary>
    /// The pid the peer must have: the domain's QEMU as libvirt reports it; null while libvirt
    /// has not said yet, which refuses the peer at once (see <see cref="RefuseHello"/>). Null function: any pid.
    /// </summary>
    public Func<int?>? PeerPid { get; init; }

    /// <summary>Why <c>path</c> is not this domain's RAM file, or null if it is. Null function: any file.</summary>
    public Func<string, string?>? CheckRamPath { get; init; }

    /// <summary>What the rules name, for the log ("QEMU of gc-kv (uid 64055)").</summary>
    public string Describe { get; init; } = "";

    /// <summary>
    /// Processes of the listener's own user, any pid, any RAM file (guidecopy pages/bench and the
    /// memory-plane tests, where the faulting side is a program the same user started).
    /// </summary>
    public static ShimPeerRules SameUser() => new() { PeerUid = Syscall.geteuid(), Describe = $"processes of uid {Syscall.geteuid()}" };

    internal string? RefuseBeforeHello(PeerCredentials peer) =>
        peer.Uid != PeerUid ? $"uid {peer.Uid} is not {Describe}" : null;

    /// <summary>Null when <paramref name="hello"/> from <paramref name="peer"/> is acceptable, else why not.</summary>
    internal string? RefuseHello(PeerCredentials peer, ShimHello hello)
    {
        if (hello.Pid != peer.Pid)
        {
            return $"the hello says pid {hello.Pid}, the kernel says {peer.Pid}";
        }

        if (PeerPid is not null)
        {
            // No wait for a pid libvirt has not reported: libvirt writes the domain's pid file
            // before it lets QEMU exec (virCommand's daemonize handshake), so a real shim, which
            // connects from QEMU's first mmap of guest RAM, always finds it; a peer that comes
            // earlier is not that QEMU. (A wait here would hold the listener, and the real
            // shim's ack deadline with it.) A refused real shim would simply try again.
            int? expected = PeerPid();
            if (expected != peer.Pid)
            {
                return expected is null ? $"libvirt reports no QEMU pid yet for {Describe}" : $"pid {peer.Pid} is not {Describe} (libvirt: pid {expected})";
            }
        }

        if (CheckRamPath?.Invoke(hello.RamPath) is { } wrongPath)
        {
            return wrongPath;
        }

        return SharedMapping.Check(peer.Pid, hello.Base, hello.RamPath);
    }
}
