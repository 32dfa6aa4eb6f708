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
            string secret = AgentSecret.CreateIn(dir);
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

    /// <summary>
    /// The agent's metrics listen on the migration link's address; when that address goes away
    /// before the agent stops (a link taken down, a lab torn down), HttpListener's close throws
    /// EADDRNOTAVAIL. That used to fail the agent's background service at Critical on every
    /// such stop; it must be a warning and a clean exit (status 0). Run in a network namespace
    /// of its own, whose loopback holds the address for the time of the test.
    /// </summary>
    [Test]
    public void AgentStopsCleanlyWhenItsMetricsAddressIsGone()
    {
        string dir = Directory.CreateTempSubdirectory("gc-agent-").FullName;
        try
        {
            string secret = AgentSecret.CreateIn(dir);
            string socket = Path.Combine(dir, "agent.sock");
            string agent = string.Join(' ', new[]
            {
                "dotnet", CliProcess.DllPath, "agent", "--config", RepoFile.PathOf("packaging/guidecopy.json"),
                "--set", $"Agent:SecretFile={secret}", "--set", $"Agent:ControlSocket={socket}",
                "--set", $"Agent:WorkDir={Path.Combine(dir, "work")}", "--set", "Agent:ControlListen=",
                "--set", "Agent:MetricsListen=10.123.45.6:9471",
            }.Select(a => "'" + a + "'"));
            string script = $$"""
                set -u
                ip link set lo up && ip addr add 10.123.45.6/32 dev lo
                {{agent}} > '{{dir}}/agent.log' 2>&1 & apid=$!
                for i in $(seq 300); do [ -S '{{socket}}' ] && break; sleep 0.1; done
                curl -sf http://10.123.45.6:9471/metrics | grep -c '^guidecopy_' || echo "no guidecopy_ series"
                ip addr del 10.123.45.6/32 dev lo
                kill -TERM $apid; wait $apid; echo "agent exit $?"
                """;
            var run = CommandRunner.Run("unshare", ["-n", "bash", "-c", script], TimeSpan.FromMinutes(2));
            string log = File.ReadAllText(Path.Combine(dir, "agent.log"));
            TestContext.Out.WriteLine(run.StdOut + run.StdErr + log);
            Assert.That(run.StdOut, Does.Not.Contain("no guidecopy_ series"), "the agent served its metrics on that address first");
            Assert.That(run.StdOut, Does.Contain("agent exit 0"), log);
            Assert.That(log, Does.Contain("metrics listener closed with an error"));
            Assert.That(log, Does.Not.Contain("BackgroundService failed"));
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
