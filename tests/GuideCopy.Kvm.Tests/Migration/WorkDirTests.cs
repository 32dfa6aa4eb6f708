using GuideCopy.Lab;
using GuideCopy.MemoryPlane;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using Mono.Unix.Native;

namespace GuideCopy.Kvm.Tests.Migration;

/// <summary>
/// A migration's work directory on a real file system with real users (docs/security.md,
/// "Local users"): root:QEMU's group 0750, the domain's socket directory 01770, sockets 0660;
/// another local user cannot reach a socket, and QEMU's group can neither remove nor replace
/// one; ids that are not plain names are refused; the agent deletes only a directory it marked;
/// a side refused for a duplicate id leaves the live migration's directory alone.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class WorkDirTests
{
    private const string Uuid = "0a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d";
    private string _root = null!;
    private AgentOptions _options = null!;
    private QemuUser _qemu = null!;
    private readonly List<string> _log = [];

    [OneTimeSetUp]
    public void Users()
    {
        if (!File.Exists(LocalAttacker.ShimPeer))
        {
            CommandRunner.Check("make", "-C", Path.Combine(Path.GetDirectoryName(NativeBuild.Tools)!, ".."), "tools");
        }

        LocalAttacker.EnsureUser();
    }

    [SetUp]
    public void Dir()
    {
        // Short: a socket path must fit sun_path (108 bytes).
        _root = Path.Combine("/tmp", $"gcw-{Guid.NewGuid():N}"[..12]);
        Directory.CreateDirectory(_root);
        _options = new AgentOptions { WorkDir = Path.Combine(_root, "work") };
        _qemu = QemuUser.Resolve(_options);
        _log.Clear();
    }

    [TearDown]
    public void Clean() => Directory.Delete(_root, recursive: true);

    private static (string Mode, uint Uid, uint Gid) Stat(string path)
    {
        Assert.That(Syscall.lstat(path, out var st), Is.Zero, path);
        return (Convert.ToString((int)st.st_mode & 0xfff, 8), st.st_uid, st.st_gid);
    }

    [Test]
    public void DirectoriesAreRootsInQemusGroupAndClosedToOthers()
    {
        var work = new MigrationWorkDir(_options, "m-1");
        work.Create(_qemu);
        string domainDir = work.CreateDomainDir(Uuid, _qemu);
        Assert.That(Stat(_options.WorkDir), Is.EqualTo(("750", 0u, _qemu.Gid)));
        Assert.That(Stat(work.Path), Is.EqualTo(("750", 0u, _qemu.Gid)));
        Assert.That(Stat(domainDir), Is.EqualTo(("1770", 0u, _qemu.Gid)));
        Assert.That(domainDir, Is.EqualTo(Path.Combine(_options.WorkDir, "libvirt-" + Uuid)), "named after the domain's AppArmor profile");
        using var listener = new ShimListener(Path.Combine(domainDir, "shim.sock"), DomainShimRules.For(_options, _qemu, "vm"));
        Assert.That(Stat(listener.SocketPath), Is.EqualTo(("660", 0u, _qemu.Gid)));
    }

    [Test]
    public void AnotherUserCannotReachTheSocketNorReplaceIt()
    {
        var work = new MigrationWorkDir(_options, "m-2");
        work.Create(_qemu);
        using var listener = new ShimListener(Path.Combine(work.CreateDomainDir(Uuid, _qemu), "shim.sock"), DomainShimRules.For(_options, _qemu, "vm"));
        var send = LocalAttacker.Run(LocalAttacker.ShimPeer, "send", listener.SocketPath, "uffd");
        Assert.That(send.StdOut, Does.Contain("CONNECT-FAILED Permission denied"), send.StdOut + send.StdErr);
        var rebind = LocalAttacker.Run(LocalAttacker.ShimPeer, "rebind", listener.SocketPath, "100");
        Assert.That(rebind.StdOut, Does.Contain("UNLINK-FAILED Permission denied").And.Contain("BIND-FAILED Permission denied"), rebind.StdOut);
        Assert.That(File.Exists(listener.SocketPath), "the agent's socket must still be there");
    }

    [Test]
    public void QemusGroupCannotReplaceTheSocket()
    {
        // Another VM's QEMU has the same uid and group: the sticky bit keeps root's socket in place.
        var work = new MigrationWorkDir(_options, "m-3");
        work.Create(_qemu);
        using var listener = new ShimListener(Path.Combine(work.CreateDomainDir(Uuid, _qemu), "shim.sock"), DomainShimRules.For(_options, _qemu, "vm"));
        var argv = LocalAttacker.As(_qemu.Name, _options.QemuGroup, [_options.QemuGroup], LocalAttacker.ShimPeer, "rebind", listener.SocketPath, "100");
        var rebind = CommandRunner.Run(argv[0], argv[1..]);
        Assert.That(rebind.StdOut, Does.Contain("UNLINK-FAILED Operation not permitted").And.Contain("BIND-FAILED Address already in use"), rebind.StdOut + rebind.StdErr);
    }

    [TestCase("../etc")]
    [TestCase("/etc")]
    [TestCase("..")]
    [TestCase("a/b")]
    [TestCase("")]
    public void AnIdThatIsNotAPlainNameNamesNoDirectory(string id) =>
        Assert.Throws<ArgumentException>(() => _ = new MigrationWorkDir(_options, id));

    [Test]
    public void OnlyADirectoryTheAgentMarkedIsDeleted()
    {
        var work = new MigrationWorkDir(_options, "m-4");
        MigrationWorkDir.CreateRoot(_options, _qemu);
        Directory.CreateDirectory(work.Path);
        File.WriteAllText(Path.Combine(work.Path, "precious"), "x");
        work.Remove(_log.Add);
        Assert.That(File.Exists(Path.Combine(work.Path, "precious")), "an unmarked directory must stay");
        Assert.That(_log, Has.Some.Contains("no .guidecopy-work marker"));

        var link = new MigrationWorkDir(_options, "m-5");
        string target = Path.Combine(_root, "elsewhere");
        Directory.CreateDirectory(target);
        File.WriteAllText(Path.Combine(target, MigrationWorkDir.MarkerName), "m-5\n");
        File.CreateSymbolicLink(link.Path, target);
        link.Remove(_log.Add);
        Assert.That(Directory.Exists(target) && File.Exists(Path.Combine(target, MigrationWorkDir.MarkerName)), "a link's target must stay");

        work.Create(_qemu);
        string domainDir = work.CreateDomainDir(Uuid, _qemu);
        work.Remove(_log.Add);
        Assert.That(Directory.Exists(work.Path) || Directory.Exists(domainDir), Is.False, "the agent's own directories go");
    }

    [Test]
    public void ASideRefusedForADuplicateIdLeavesTheLiveDirectory()
    {
        // Before: the refused side's Dispose deleted the live migration's work dir (its shim socket with it).
        var live = new MigrationWorkDir(_options, "dup-1");
        live.Create(_qemu);
        var journal = new MigrationJournal(Path.Combine(_root, "journal"));
        new DestinationSide(_options, [], "dup-1", journal, AgentLog.To(_log.Add)).Dispose();
        new SourceSide(_options, [], "dup-1", journal, AgentLog.To(_log.Add)).Dispose();
        Assert.That(File.Exists(Path.Combine(live.Path, MigrationWorkDir.MarkerName)));
    }
}
