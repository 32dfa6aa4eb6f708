using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using GuideCopy.Lab;

namespace GuideCopy.Kvm.Tests.Packaging;

/// <summary>
/// What `journalctl -u guidecopy-agent -p warning` shows on a host: the agent's lines reach
/// journald with their own priorities (an error at 3, a warning at 4, the rest at 6), one
/// timestamp (journald's), no "info:" prefixes. This machine has no systemd as PID 1, so the
/// test runs a real systemd-journald in a private mount namespace (its sockets and its volatile
/// store on tmpfs there, the host's journal untouched) and starts the agent under systemd-cat,
/// which connects its stdout to journald's stream socket and sets JOURNAL_STREAM as a unit's
/// StandardOutput=journal does (systemd.exec(5)). The agent is made to log an error (its
/// metrics port is taken) and a warning (a control connection that never proves the secret).
/// </summary>
[TestFixture]
public sealed class JournaldTests
{
    private const string Journald = "/lib/systemd/systemd-journald";

    [Test]
    public void AgentLinesReachJournaldWithTheirPriorities()
    {
        Assert.That(File.Exists(Journald), Is.True, $"{Journald} is missing: scripts/host-setup installs the systemd package");
        string dir = Directory.CreateTempSubdirectory("gc-journald-").FullName;
        // Taken by this test: the agent's metrics server cannot bind it, and must say so at Error.
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        int metricsPort = ((IPEndPoint)taken.LocalEndpoint).Port;
        int controlPort = FreePort();
        string tag = $"gc-agent-test-{Environment.ProcessId}";
        try
        {
            string secret = AgentSecret.CreateIn(dir);
            string socket = Path.Combine(dir, "agent.sock");
            string agent = string.Join(' ', new[]
            {
                "dotnet", CliProcess.DllPath, "agent", "--config", RepoFile.PathOf("packaging/guidecopy.json"),
                "--set", $"Agent:SecretFile={secret}",
                "--set", $"Agent:ControlSocket={socket}",
                "--set", $"Agent:WorkDir={Path.Combine(dir, "work")}",
                "--set", $"Agent:ControlListen=127.0.0.1:{controlPort}",
                "--set", $"Agent:MetricsListen=127.0.0.1:{metricsPort}",
            }.Select(Quote));
            string script = $$"""
                set -eu
                mount --make-rprivate /
                mount -t tmpfs tmpfs /run
                mount -t tmpfs tmpfs /var/log/journal 2>/dev/null || true
                {{Journald}} & jpid=$!
                trap 'kill $jpid 2>/dev/null || true' EXIT
                for i in $(seq 100); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.1; done
                systemd-cat -t {{tag}} {{agent}} & apid=$!
                for i in $(seq 300); do [ -S {{Quote(socket)}} ] && break; sleep 0.1; done
                [ -S {{Quote(socket)}} ] || { echo "agent did not start" >&2; kill $apid; exit 1; }
                for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/{{controlPort}}) 2>/dev/null && break; sleep 0.1; done
                # A peer that connects, speaks garbage and leaves: it never proves the secret.
                exec 3<>/dev/tcp/127.0.0.1/{{controlPort}}
                printf 'GET / HTTP/1.0\r\n\r\n' >&3
                sleep 1
                exec 3>&-
                sleep 2
                kill -TERM $apid; wait $apid || true
                journalctl --sync 2>/dev/null || sleep 1
                journalctl -t {{tag}} -o json --no-pager
                """;
            var run = CommandRunner.Run("unshare", ["-m", "bash", "-c", script], TimeSpan.FromMinutes(2));
            Assert.That(run.ExitCode, Is.EqualTo(0), run.StdErr + run.StdOut);
            var entries = run.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => JsonDocument.Parse(l).RootElement)
                .Select(e => (Priority: e.GetProperty("PRIORITY").GetString()!, Message: Text(e.GetProperty("MESSAGE"))))
                .ToList();
            TestContext.Out.WriteLine(string.Join('\n', entries.Select(e => $"<{e.Priority}> {e.Message}")));

            Assert.That(entries.Where(e => e.Priority == "3").Select(e => e.Message),
                Has.Some.Contains("Agent:MetricsListen"), "the metrics error at err (3)");
            Assert.That(entries.Where(e => e.Priority == "4").Select(e => e.Message),
                Has.Some.Contains("refused a control connection"), "the refusal at warning (4)");
            Assert.That(entries.Where(e => e.Priority == "6").Select(e => e.Message),
                Has.Some.Contains("control channel on unix:"), "start-up at info (6)");
            Assert.That(entries.Where(e => int.Parse(e.Priority) <= 4).Select(e => e.Message),
                Has.None.Contains("control channel on"), "`-p warning` shows only what went wrong");
            Assert.That(entries.Select(e => e.Message), Has.None.Match(@"^(<\d>|info:|warn:|fail:|\d{4}-\d\d-\d\d)"),
                "no level prefix or second timestamp in the message: journald has both");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string Quote(string s) => "'" + s.Replace("'", "'\\''") + "'";

    /// <summary>journalctl's JSON gives MESSAGE as a string, or as a byte array when it is not valid UTF-8.</summary>
    private static string Text(JsonElement message) => message.ValueKind == JsonValueKind.String
        ? message.GetString()!
        : System.Text.Encoding.UTF8.GetString(message.EnumerateArray().Select(b => (byte)b.GetInt32()).ToArray());

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
