using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>A process the test started: its output lines, waits on them, and a kill by PID.</summary>
public sealed class ChildProcess : IDisposable
{
    private readonly BlockingCollection<string> _lines = new();
    private readonly StringBuilder _all = new();
    public Process Process { get; }
    public string Name { get; }

    public ChildProcess(string name, Process process)
    {
        Name = name;
        Process = process;
        process.OutputDataReceived += (_, e) => Add(e.Data, "");
        process.ErrorDataReceived += (_, e) => Add(e.Data, "stderr: ");
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public static ChildProcess Start(string name, string file, IEnumerable<string> args, IDictionary<string, string>? env = null, bool stdin = false)
    {
        var psi = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        return new ChildProcess(name, Process.Start(psi)!);
    }

    private void Add(string? line, string prefix)
    {
        if (line is null) return;
        lock (_all) _all.AppendLine(prefix + line);
        if (prefix.Length == 0) _lines.Add(line);
        TestContext.Progress.WriteLine($"[{Name}] {prefix}{line}");
    }

    public string Output { get { lock (_all) return _all.ToString(); } }

    /// <summary>Waits for a stdout line starting with <paramref name="prefix"/>.</summary>
    public string WaitFor(string prefix, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !_lines.TryTake(out var line, left))
                throw new TimeoutException($"{Name}: no '{prefix}' line within {timeout}. Output:\n{Output}");
            if (line.StartsWith(prefix, StringComparison.Ordinal)) return line;
        }
    }

    public int WaitForExit(TimeSpan timeout)
    {
        if (!Process.WaitForExit(timeout)) throw new TimeoutException($"{Name} did not exit within {timeout}. Output:\n{Output}");
        Process.WaitForExit();
        return Process.ExitCode;
    }

    /// <summary>SIGTERM (graceful) then wait; SIGKILL if it lingers.</summary>
    public void Stop()
    {
        if (Process.HasExited) return;
        CommandRunnerKill("TERM");
        if (!Process.WaitForExit(5000)) Kill();
    }

    public void Kill()
    {
        if (Process.HasExited) return;
        Process.Kill();
        Process.WaitForExit(5000);
    }

    private void CommandRunnerKill(string signal)
    {
        using var k = Process.Start("kill", ["-" + signal, Process.Id.ToString()]);
        k.WaitForExit();
    }

    public void Dispose()
    {
        try { Kill(); } catch (InvalidOperationException) { }
        Process.Dispose();
    }

    /// <summary>Parses key=value fields of a RESULT/DONE/COUNTERS line.</summary>
    public static Dictionary<string, string> Fields(string line) =>
        line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(f => f.Contains('='))
            .Select(f => f.Split('=', 2)).ToDictionary(f => f[0], f => f[1]);
}
