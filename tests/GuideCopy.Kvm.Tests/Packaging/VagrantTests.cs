using GuideCopy.Lab;

namespace GuideCopy.Kvm.Tests.Packaging;

/// <summary>
/// vagrant/ and the host scripts, as far as this machine can check them: shell syntax, and
/// `vagrant validate` (Vagrantfile and vagrant-libvirt's provider settings) where vagrant is
/// installed. Booting the hosts needs a box download, which this workplace cannot make.
/// </summary>
[TestFixture]
public sealed class VagrantTests
{
    [TestCase("scripts/host-setup")]
    [TestCase("scripts/install-host")]
    [TestCase("vagrant/demo")]
    [TestCase("vagrant/demo-guest")]
    public void ScriptParses(string script)
    {
        var r = CommandRunner.Run("bash", "-n", RepoFile.PathOf(script));
        Assert.That(r.ExitCode, Is.EqualTo(0), r.StdErr);
        Assert.That(File.GetUnixFileMode(RepoFile.PathOf(script)).HasFlag(UnixFileMode.UserExecute), Is.True, "executable");
    }

    [TestCase("--set", "nonsense", "is not Section:Key=value")]
    [TestCase("--bogus", "", "unknown option")]
    public void InstallHostRefusesBadOptionsBeforeTouchingAnything(string option, string value, string message)
    {
        string[] args = value.Length > 0 ? [option, value] : [option];
        var r = CommandRunner.Run(RepoFile.PathOf("scripts/install-host"), args);
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.StdErr, Does.Contain(message));
    }

    [Test]
    public void HostSetupAndInstallHostDocumentTheirOptions()
    {
        var setup = CommandRunner.Run(RepoFile.PathOf("scripts/host-setup"), "--help");
        Assert.That(setup.StdOut, Does.Contain("--install-agent"));
        var install = CommandRunner.Run(RepoFile.PathOf("scripts/install-host"), "--help");
        Assert.That(install.ExitCode, Is.EqualTo(0));
        foreach (var o in new[] { "--publish-dir", "--publish-to", "--secret", "--set", "--libvirt-tcp", "--firewall-from", "--no-start" })
        {
            Assert.That(install.StdOut, Does.Contain(o));
        }
    }

    [Test]
    public void VagrantValidatePasses()
    {
        if (CommandRunner.Which("vagrant") is null)
        {
            Assert.Ignore("vagrant is not installed (Debian packages vagrant, vagrant-libvirt)");
        }

        if (!CommandRunner.Run("vagrant", "plugin", "list").StdOut.Contains("vagrant-libvirt"))
        {
            Assert.Ignore("the vagrant-libvirt plugin is not installed (Debian package vagrant-libvirt)");
        }

        // Its own dot dir, so this never touches the state of a rig someone has up.
        string dotDir = Directory.CreateTempSubdirectory("gc-vagrant-").FullName;
        try
        {
            var r = CommandRunner.Run("env", ["-C", RepoFile.PathOf("vagrant"), $"VAGRANT_DOTFILE_PATH={dotDir}",
                "VAGRANT_DEFAULT_PROVIDER=libvirt", "VAGRANT_CHECKPOINT_DISABLE=1", "vagrant", "validate"], TimeSpan.FromMinutes(2));
            TestContext.Out.WriteLine(r.StdOut + r.StdErr);
            Assert.That(r.ExitCode, Is.EqualTo(0), r.StdOut + r.StdErr);
            Assert.That(r.StdOut, Does.Contain("validated successfully"));
        }
        finally
        {
            Directory.Delete(dotDir, recursive: true);
        }
    }
}
