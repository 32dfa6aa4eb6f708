using GuideCopy.Lab;
using GuideCopy.Cli.Commands;

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

/// <summary>Configuration mistakes an operator makes, each one clear error (exit 2) naming the fix: never a knob silently left at its default.</summary>
[TestFixture]
public sealed class ConfigurationErrorTests
{
    private string _dir = "";

    [SetUp]
    public void MakeDir() => _dir = Directory.CreateTempSubdirectory("gc-config-").FullName;

    [TearDown]
    public void RemoveDir() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void AConfigFileNamedOnPurposeMustExist()
    {
        var r = CliProcess.Run("agent", "--config", Path.Combine(_dir, "missing.json"));
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.StdErr, Does.Contain("missing.json' does not exist (--config)"));
        r = CliProcess.Run(new Dictionary<string, string> { ["GUIDECOPY_CONFIG"] = Path.Combine(_dir, "gone.json") }, "jobs");
        Assert.That(r.StdErr, Does.Contain("gone.json' does not exist ($GUIDECOPY_CONFIG)"));
    }

    [Test]
    public void AnUnknownKeyNamesTheNearestKnownOneAndWhereItCameFrom()
    {
        string file = Path.Combine(_dir, "guidecopy.json");
        File.WriteAllText(file, """{ "Agent": { "PageListn": "10.0.0.1:7171" } }""");
        var r = CliProcess.Run("agent", "--config", file);
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.StdErr, Does.Contain($"unknown setting 'Agent:PageListn' in {file}: did you mean 'Agent:PageListen'?"));

        r = CliProcess.Run("agent", "--config", EmptyFile(), "--set", "Agent:DemandRealtimePriorty=3");
        Assert.That(r.StdErr, Does.Contain("'Agent:DemandRealtimePriorty' in --set: did you mean 'Agent:DemandRealtimePriority'?"));

        r = CliProcess.Run(new Dictionary<string, string> { ["GUIDECOPY__GUIDE__IDLESECOND"] = "3" },
            "migrate", "vm1", "--from", "qemu+tcp://h1/system", "--to", "qemu+tcp://h2/system", "--config", EmptyFile());
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.StdErr, Does.Contain("in the environment").And.Contain("did you mean 'Guide:IdleSeconds'?"));
    }

    [Test]
    public void ABadValueNamesItsKey()
    {
        var r = CliProcess.Run("agent", "--config", EmptyFile(), "--set", "Agent:GuideNice=abc");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.StdErr, Does.Contain("'abc'").And.Contain("Agent:GuideNice"));
        r = CliProcess.Run("agent", "--config", EmptyFile(), "--set", "Agent:GuideNice");
        Assert.That(r.StdErr, Does.Contain("is not Section:Key=value"));
    }

    [Test]
    public void ASetFlagOverridesTheFileAndKnownKeysPass()
    {
        // A known key from every source passes validation and reaches the command: the agent
        // then stops at the next thing it needs (its secret file), named from the --set value.
        string file = Path.Combine(_dir, "guidecopy.json");
        File.WriteAllText(file, $$"""{ "Agent": { "SecretFile": "{{_dir}}/from-file" }, "Guide": { "IdleSeconds": 3 } }""");
        var r = CliProcess.Run("agent", "--config", file, "--set", $"Agent:SecretFile={_dir}/from-set");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.StdErr, Does.Contain("from-set").And.Not.Contain("from-file").And.Not.Contain("unknown setting"));
    }

    [Test]
    public void TheUnreachableAgentErrorNamesControlListen()
    {
        var r = CliProcess.Run("jobs", "--host", "qemu+tcp://127.0.0.1/system", "--secret-file", Secret(), "--config", EmptyFile());
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.StdErr, Does.Contain("unreachable").And.Contain("Agent:ControlListen").And.Contain("empty by default"));
    }

    private string EmptyFile()
    {
        string file = Path.Combine(_dir, "empty.json");
        File.WriteAllText(file, "{}");
        return file;
    }

    private string Secret()
    {
        string file = Path.Combine(_dir, "secret");
        File.WriteAllText(file, "0123456789abcdef0123456789abcdef");
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return file;
    }
}

/// <summary>--bandwidth counts as virsh does: a plain number is MiB/s; units say otherwise.</summary>
[TestFixture]
public sealed class BandwidthUnitTests
{
    [TestCase("100", 100L * 1024 * 1024)]
    [TestCase("1.5", 3L * 512 * 1024)]
    [TestCase("100mbit", 12_500_000L)]
    [TestCase("1gbit", 125_000_000L)]
    [TestCase("12MiB/s", 12L * 1024 * 1024)]
    [TestCase("12MB/s", 12_000_000L)]
    [TestCase("12M", 12_000_000L)]
    [TestCase("500B/s", 500L)]
    public void ParsesAsVirshWould(string text, long bytesPerSecond) =>
        Assert.That(MigrateCommand.ParseBandwidth(text), Is.EqualTo(bytesPerSecond));
}

/// <summary>The man page and bash completion, made from the command tree, as a user meets them.</summary>
[TestFixture]
public sealed class ManPageAndCompletionTests
{
    [Test]
    public void TheManPageRendersAndListsEveryCommandAndTheExitCodes()
    {
        var page = CliProcess.Run("man");
        Assert.That(page.ExitCode, Is.EqualTo(0));
        string file = Path.Combine(Path.GetTempPath(), $"guidecopy-{Environment.ProcessId}.1");
        File.WriteAllText(file, page.StdOut);
        try
        {
            var rendered = CommandRunner.Run("env", ["MANWIDTH=200", "man", "-l", file], TimeSpan.FromSeconds(30));
            Assert.That(rendered.ExitCode, Is.EqualTo(0), rendered.StdErr);
            string text = System.Text.RegularExpressions.Regex.Replace(rendered.StdOut, ".\b", "");
            foreach (string command in new[] { "migrate", "check", "jobs", "abort", "agent", "compare", "lab" })
            {
                Assert.That(text, Does.Contain($"guidecopy {command}"));
            }

            Assert.That(text, Does.Contain("EXIT STATUS").And.Contain("11 rolled back").And.Contain("--max-downtime"));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Test]
    public void BashCompletesCommandsOptionsAndTheirValues()
    {
        string script = CliProcess.Run("completion", "bash").StdOut;
        string file = Path.Combine(Path.GetTempPath(), $"guidecopy-{Environment.ProcessId}.bash");
        File.WriteAllText(file, script);
        try
        {
            string Complete(string words, int cword) => CommandRunner.Run("bash", ["-c",
                $"source {file}; COMP_WORDS=({words}); COMP_CWORD={cword}; _guidecopy; echo \"${{COMPREPLY[*]}}\""], TimeSpan.FromSeconds(30)).StdOut.Trim();
            Assert.That(Complete("guidecopy mi", 1), Is.EqualTo("migrate"));
            Assert.That(Complete("guidecopy migrate vm --mode ''", 4), Does.Contain("guide").And.Contain("postcopy-preempt").And.Contain("precopy"));
            Assert.That(Complete("guidecopy migrate vm --max", 3), Is.EqualTo("--max-downtime"));
            Assert.That(Complete("guidecopy lab ''", 2), Does.Contain("up").And.Contain("down"));
        }
        finally
        {
            File.Delete(file);
        }
    }
}
