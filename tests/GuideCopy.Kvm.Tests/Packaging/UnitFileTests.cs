using GuideCopy.Lab;

namespace GuideCopy.Kvm.Tests.Packaging;

/// <summary>packaging/guidecopy-agent.service: what issue 7 asks of it, and systemd's own verdict.</summary>
[TestFixture]
public sealed class UnitFileTests
{
    private const string UnitPath = "packaging/guidecopy-agent.service";

    private static Dictionary<string, List<string>> Directives()
    {
        var d = new Dictionary<string, List<string>>();
        string section = "";
        foreach (var raw in RepoFile.Read(UnitPath).Split('\n'))
        {
            string line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }

            if (line.StartsWith('['))
            {
                section = line.Trim('[', ']');
                continue;
            }

            int eq = line.IndexOf('=');
            string key = section + "." + line[..eq];
            if (!d.TryGetValue(key, out var values))
            {
                d[key] = values = [];
            }

            values.Add(line[(eq + 1)..]);
        }

        return d;
    }

    [TestCase("Service.Type", "notify")]
    [TestCase("Service.User", "root")]
    [TestCase("Service.Restart", "on-failure")]
    [TestCase("Service.ExecStart", "/opt/guidecopy/guidecopy agent --config /etc/guidecopy/guidecopy.json")]
    [TestCase("Service.RuntimeDirectory", "guidecopy")]
    [TestCase("Install.WantedBy", "multi-user.target")]
    public void UnitSays(string key, string value)
    {
        Assert.That(Directives().GetValueOrDefault(key), Is.EqualTo(new[] { value }));
    }

    [Test]
    public void ConfigFileInTheUnitIsTheCliDefault()
    {
        // The unit names the file explicitly; it must be the one the CLI reads by default too.
        string config = RepoFile.Read("src/GuideCopy.Cli/Configuration/GuideCopyConfiguration.cs");
        Assert.That(config, Does.Contain("DefaultFile = \"/etc/guidecopy/guidecopy.json\""));
    }

    /// <summary>
    /// systemd-analyze verify parses the unit as systemd would load it. It also checks that
    /// ExecStart exists: where the agent is not installed, it verifies a copy whose ExecStart
    /// points at a stand-in executable, so everything else is still checked.
    /// </summary>
    [Test]
    public void SystemdAnalyzeVerifyPasses()
    {
        if (CommandRunner.Which("systemd-analyze") is null)
        {
            Assert.Ignore("systemd-analyze is not installed (Debian package systemd)");
        }

        string dir = Directory.CreateTempSubdirectory("gc-unit-").FullName;
        try
        {
            string text = RepoFile.Read(UnitPath);
            const string Installed = "/opt/guidecopy/guidecopy";
            if (!File.Exists(Installed))
            {
                string stand = Path.Combine(dir, "guidecopy");
                File.WriteAllText(stand, "#!/bin/sh\nexit 0\n");
                File.SetUnixFileMode(stand, (UnixFileMode)0b111_101_101);
                text = text.Replace("ExecStart=" + Installed, "ExecStart=" + stand);
            }

            string unit = Path.Combine(dir, "guidecopy-agent.service");
            File.WriteAllText(unit, text);
            var r = CommandRunner.Run("systemd-analyze", ["verify", "--man=no", unit], TimeSpan.FromMinutes(1));
            TestContext.Out.WriteLine($"systemd-analyze verify: exit {r.ExitCode}\n{r.StdOut}{r.StdErr}");
            // Other units' complaints (this machine's) are not ours; any line naming our unit is.
            var ours = (r.StdOut + r.StdErr).Split('\n').Where(l => l.Contains("guidecopy-agent.service")).ToList();
            Assert.That(ours, Is.Empty);
            Assert.That(r.ExitCode, Is.EqualTo(0), r.StdErr);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
