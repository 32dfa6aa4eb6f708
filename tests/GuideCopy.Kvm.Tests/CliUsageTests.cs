namespace GuideCopy.Kvm.Tests;

/// <summary>The CLI's usage errors, as an operator's script sees them: exit 2 and a line naming the problem.</summary>
[TestFixture]
public sealed class CliUsageTests
{
    [Test]
    public void MissingRequiredOptionExitsTwoAndNamesIt()
    {
        var r = CliProcess.Run("migrate", "vm1");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.StdErr, Does.Contain("'--from' is required").And.Contain("'--to' is required"));
    }

    [Test]
    public void UnknownModeExitsTwo()
    {
        var r = CliProcess.Run("migrate", "vm1", "--from", "lab:a", "--to", "lab:b", "--mode", "teleport");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.StdErr, Does.Contain("teleport"));
    }

    [Test]
    public void BadBandwidthAndTargetAreUsageErrors()
    {
        var r = CliProcess.Run("migrate", "vm1", "--from", "ftp://nowhere", "--to", "lab:b");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.StdErr, Does.Contain("neither a libvirt URI"));
        r = CliProcess.Run("migrate", "vm1", "--from", "qemu+tcp://h1/system", "--to", "qemu+tcp://h2/system", "--bandwidth", "fast", "--mode", "precopy");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.StdErr, Does.Contain("bandwidth 'fast' is not a rate"));
    }

    [Test]
    public void HelpListsTheCommands()
    {
        var r = CliProcess.Run("--help");
        Assert.That(r.ExitCode, Is.EqualTo(0));
        Assert.That(r.StdOut, Does.Contain("migrate").And.Contain("agent").And.Contain("lab").And.Contain("compare"));
    }
}
