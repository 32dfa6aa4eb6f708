using System.Diagnostics;
using GuideCopy.Lab;

namespace GuideCopy.Kvm.Tests.Packaging;

/// <summary>
/// The agent starts from a config file the way the systemd unit starts it, opens its control
/// socket, and stops cleanly on SIGTERM (what `systemctl stop` sends): once with this build and
/// packaging/guidecopy.json, once with what scripts/install-host installed, where it ran.
/// Sockets and work dir go to a temporary directory, so a real agent on this machine is never
/// disturbed.
/// </summary>
[TestFixture]
public sealed class AgentStartTests
{
    private const string InstalledProgram = "/opt/guidecopy/guidecopy";
    private const string InstalledConfig = "/etc/guidecopy/guidecopy.json";

    [Test]
    public void ThisBuildStartsWithTheSampleConfig()
    {
        string dir = Directory.CreateTempSubdirectory("gc-agent-").FullName;
        try
        {
            string secret = Path.Combine(dir, "secret");
            File.WriteAllText(secret, Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)) + "\n");
            File.SetUnixFileMode(secret, (UnixFileMode)0b110_000_000);
            StartAndStop(["dotnet", CliProcess.DllPath], RepoFile.PathOf("packaging/guidecopy.json"), dir, ["--set", $"Agent:SecretFile={secret}"]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void InstalledAgentStartsWithTheInstalledConfig()
    {
        if (!File.Exists(InstalledProgram) || !File.Exists(InstalledConfig))
        {
            Assert.Ignore($"not installed here ({InstalledProgram}, {InstalledConfig}): run scripts/host-setup --install-agent");
        }

        string dir = Directory.CreateTempSubdirectory("gc-agent-").FullName;
        try
        {
            StartAndStop([InstalledProgram], InstalledConfig, dir, []);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static void StartAndStop(string[] program, string config, string dir, string[] extra)
    {
        string socket = Path.Combine(dir, "agent.sock");
        var psi = new ProcessStartInfo(program[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in program.Skip(1).Concat(
                 [
                     "agent", "--config", config,
                     "--set", $"Agent:ControlSocket={socket}",
                     "--set", $"Agent:WorkDir={Path.Combine(dir, "work")}",
                     "--set", "Agent:ControlListen=",
                 ]).Concat(extra))
        {
            psi.ArgumentList.Add(a);
        }

        using var agent = Process.Start(psi)!;
        var stdout = agent.StandardOutput.ReadToEndAsync();
        var stderr = agent.StandardError.ReadToEndAsync();
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (!File.Exists(socket) && !agent.HasExited && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(100);
            }

            Assert.That(File.Exists(socket), Is.True, $"no control socket; exited: {agent.HasExited}");
        }
        finally
        {
            if (!agent.HasExited)
            {
                CommandRunner.Run("kill", "-TERM", agent.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }

            if (!agent.WaitForExit(TimeSpan.FromSeconds(20)))
            {
                agent.Kill();
                Assert.Fail("the agent did not stop within 20 s of SIGTERM");
            }
        }

        string output = stdout.Result + stderr.Result;
        TestContext.Out.WriteLine(output);
        Assert.That(agent.ExitCode, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain($"control channel on unix:{socket}"));
        Assert.That(File.Exists(socket), Is.False, "the socket is removed on stop");
    }
}
