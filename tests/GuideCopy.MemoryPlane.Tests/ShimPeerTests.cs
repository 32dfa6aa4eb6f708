using GuideCopy.Interop;
using GuideCopy.Lab;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>
/// The shim socket between real processes (docs/security.md, "Local users"): the agent's
/// listener refuses each kind of impostor for its own reason — another uid, an fd that is no
/// userfaultfd, a RAM file that is not the domain's or not what the peer mapped, a process
/// that is not the domain's QEMU — and still takes the real shim afterwards; the shim hands
/// nothing to a listener that is not root. Real sockets, real fds, real uffds, real users
/// (setpriv); no lab needed.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class ShimPeerTests
{
    private string _dir = null!;
    private string _socket = null!;
    private string _ram = null!;
    private int? _qemuPid;
    private uint _attackerGid;
    private readonly List<string> _refusals = [];

    [OneTimeSetUp]
    public void Native()
    {
        Paths.EnsureNative();
        LocalAttacker.EnsureUser();
        _attackerGid = uint.Parse(CommandRunner.Check("id", "-g", LocalAttacker.User).Trim());
    }

    [SetUp]
    public void Dir()
    {
        // Reachable by the attacker on purpose: these tests are about what each end checks once
        // a peer reaches the socket (the agent's own work dirs keep other users out: WorkDirTests).
        _dir = Path.Combine("/tmp", "gc-shimpeer-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(_dir);
        File.SetUnixFileMode(_dir, (UnixFileMode)0b111_111_111);
        _socket = Path.Combine(_dir, "shim.sock");
        _ram = $"/dev/shm/gc-shimpeer-{Guid.NewGuid():N}.ram";
        _qemuPid = null;
        _refusals.Clear();
    }

    [TearDown]
    public void Clean()
    {
        Directory.Delete(_dir, recursive: true);
        File.Delete(_ram);
    }

    /// <summary>Root's processes, the socket in the attacker's group so that it may connect.</summary>
    private ShimListener Listener(bool checkPid = false) =>
        new(_socket, new ShimPeerRules
        {
            PeerUid = 0, SocketGid = _attackerGid, Describe = "the test's QEMU (uid 0)",
            PeerPid = checkPid ? () => _qemuPid : null,
            CheckRamPath = p => p == _ram ? null : $"{p} is not the domain's RAM file {_ram}",
        }) { Rejected = m => { lock (_refusals) _refusals.Add(m); } };

    [Test]
    public Task AnotherUsersUffdIsRefused() =>
        // An unprivileged user's own uffd (UFFD_USER_MODE_ONLY), a well-formed hello naming the right file.
        RefusedThenTheRealShimAccepted(Listener(), asAttacker: true, ["send", _socket, "uffd", _ram], @"uid \d+ is not the test's QEMU \(uid 0\)");

    [Test]
    public Task AnFdThatIsNoUserfaultfdIsRefused() =>
        RefusedThenTheRealShimAccepted(Listener(), asAttacker: false, ["send", _socket, "memfd", _ram], @"the fd it sent is /memfd:shim-peer \(deleted\), not a userfaultfd");

    [Test]
    public Task AHelloNamingAnotherRamFileIsRefused() =>
        RefusedThenTheRealShimAccepted(Listener(), asAttacker: false, ["send", _socket, "uffd", "/etc/shadow"], @"/etc/shadow is not the domain's RAM file");

    [Test]
    public Task AHelloNamingTheRamFileItDidNotMapIsRefused() =>
        // The right name, but the uffd covers the peer's own file: the kernel's maps say so.
        RefusedThenTheRealShimAccepted(Listener(), asAttacker: false, ["send", _socket, "uffd", _ram], @"maps /dev/shm/shim-peer\.\d+ \(deleted\) at 0x[0-9a-f]+, not");

    [Test]
    public Task AProcessThatIsNotTheDomainsQemuIsRefused()
    {
        // libvirt names another process as the domain's QEMU (here: the test itself) until the real one starts.
        _qemuPid = Environment.ProcessId;
        return RefusedThenTheRealShimAccepted(Listener(checkPid: true), asAttacker: false, ["send", _socket, "uffd", ""],
            $@"pid \d+ is not the test's QEMU \(uid 0\) \(libvirt: pid {Environment.ProcessId}\)");
    }

    [Test]
    public Task APeerBeforeLibvirtReportsTheQemuPidIsRefused() =>
        // _qemuPid is null until the real process starts: the impostor comes "before libvirt wrote the pid file".
        RefusedThenTheRealShimAccepted(Listener(checkPid: true), asAttacker: false, ["send", _socket, "uffd", ""],
            @"libvirt reports no QEMU pid yet for the test's QEMU");

    [Test]
    public async Task TheShimHandsNothingToAListenerThatIsNotRoot()
    {
        // The attacker got to bind the path first (here: a directory it may write; in the agent's
        // work dirs it may not, WorkDirTests): the shim must hand it nothing, and fail the mapping
        // as it does with no agent at all.
        using var rebound = ChildProcess.Start("shim-peer", "setpriv",
            LocalAttacker.As(LocalAttacker.User, LocalAttacker.User, [], LocalAttacker.ShimPeer, "rebind", _socket, "8000")[1..]);
        rebound.WaitFor("LISTENING", TimeSpan.FromSeconds(10));
        using var touch = ChildProcess.Start("ramtouch", Paths.RamTouch, ["run", _ram, "64", "seq"],
            new Dictionary<string, string>
            {
                ["LD_PRELOAD"] = Paths.Shim, ["GUIDECOPY_RAM_PATH"] = _ram, ["GUIDECOPY_AGENT_SOCKET"] = _socket,
                ["GUIDECOPY_AGENT_TIMEOUT_MS"] = "1500",
            });
        Assert.That(touch.WaitForExit(TimeSpan.FromSeconds(20)), Is.Not.Zero, "the mapping must fail without a root agent");
        Assert.That(touch.Output, Does.Match(@"refusing the listener at \S+: pid \d+ uid \d+ is not the agent \(root\)"));
        Assert.That(rebound.WaitFor("NO-", TimeSpan.FromSeconds(15)), Is.EqualTo("NO-FD"), rebound.Output);
        Assert.That(rebound.Output, Does.Not.Contain("GOT-FD"));
    }

    /// <summary>
    /// The impostor connects first and is refused with <paramref name="reason"/> (its connection
    /// closed, no ack); the listener keeps waiting, and a real shim in a real process is taken.
    /// </summary>
    private async Task RefusedThenTheRealShimAccepted(ShimListener listener, bool asAttacker, string[] impostor, string reason)
    {
        using (listener)
        {
            var pending = listener.AcceptAsync();
            var r = asAttacker ? LocalAttacker.Run(LocalAttacker.ShimPeer, impostor) : CommandRunner.Run(LocalAttacker.ShimPeer, impostor);
            TestContext.Progress.WriteLine($"shim-peer {string.Join(' ', impostor)}: {r.StdOut.Trim().Replace('\n', ' ')} {r.StdErr.Trim()}");
            Assert.That(r.ExitCode, Is.Zero, r.StdErr);
            // Closed after its hello (CLOSED), or already while it sent (SEND-FAILED: the listener
            // refused on its credentials first and closed, EPIPE): refused either way, never acked.
            Assert.That(r.StdOut, Does.Contain("CLOSED").Or.Contain("SEND-FAILED"), "the impostor must be closed");
            Assert.That(r.StdOut, Does.Not.Contain("ACKED"), "the impostor must never be acked");
            lock (_refusals)
            {
                Assert.That(_refusals, Has.Count.EqualTo(1).And.Some.Match(reason));
            }

            Assert.That(pending.IsCompleted, Is.False, "the listener must keep waiting for the real shim");
            using var touch = ChildProcess.Start("ramtouch", Paths.RamTouch, ["run", _ram, "64", "hold"],
                new Dictionary<string, string> { ["LD_PRELOAD"] = Paths.Shim, ["GUIDECOPY_RAM_PATH"] = _ram, ["GUIDECOPY_AGENT_SOCKET"] = _socket }, stdin: true);
            _qemuPid = touch.Process.Id;
            using var reg = await pending.WaitAsync(TimeSpan.FromSeconds(20));
            Assert.That(reg.QemuPid, Is.EqualTo(touch.Process.Id));
            Assert.That(reg.RamPath, Is.EqualTo(_ram));
            Assert.That(Userfaultfd.IsUserfaultfd(reg.Uffd.Fd, out string kind), Is.True, kind);
            reg.Ack();
            touch.WaitFor("MAPPED", TimeSpan.FromSeconds(10));
        }
    }
}
