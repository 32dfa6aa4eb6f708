using System.Diagnostics;

namespace GuideCopy.Cli.Bench;

/// <summary>A child process whose stdout lines we wait on; killed by PID on dispose.</summary>
internal sealed class ChildRun : IDisposable
{
    private readonly Process _p;
    private readonly System.Collections.Concurrent.BlockingCollection<string> _lines = new();
    private readonly string _name;

    private ChildRun(string name, Process p)
    {
        _name = name;
        _p = p;
        p.OutputDataReceived += (_, e) => { if (e.Data is { } l) _lines.Add(l); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is { } l && Environment.GetEnvironmentVariable("GUIDECOPY_BENCH_VERBOSE") == "1") Console.Error.WriteLine($"[{name}] {l}"); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
    }

    public static ChildRun Start(string name, string file, IEnumerable<string> args, IDictionary<string, string>? env = null, bool stdin = false)
    {
        var psi = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        return new ChildRun(name, Process.Start(psi)!);
    }

    public string Line(string prefix, int timeoutSeconds)
    {
        var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
        while (_lines.TryTake(out var l, Math.Max(0, (int)(deadline - DateTime.UtcNow).TotalMilliseconds)))
        {
            if (Environment.GetEnvironmentVariable("GUIDECOPY_BENCH_VERBOSE") == "1") Console.Error.WriteLine($"[{_name}] {l}");
            if (l.StartsWith(prefix, StringComparison.Ordinal)) return l;
        }
        throw new TimeoutException($"{_name}: no {prefix} line within {timeoutSeconds} s");
    }

    public void Input(string line)
    {
        _p.StandardInput.WriteLine(line);
        _p.StandardInput.Flush();
    }

    public void Exit(int timeoutSeconds)
    {
        if (!_p.WaitForExit(timeoutSeconds * 1000)) throw new TimeoutException($"{_name} did not finish");
        _p.WaitForExit();
        _p.Dispose();
    }

    public void Terminate()
    {
        if (_p.HasExited) return;
        using (var k = Process.Start("kill", ["-TERM", _p.Id.ToString()])) k.WaitForExit();
        _p.WaitForExit(5000);
    }

    public static Dictionary<string, string> Fields(string line) =>
        line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(f => f.Contains('='))
            .Select(f => f.Split('=', 2)).ToDictionary(f => f[0], f => f[1]);

    public void Dispose()
    {
        try
        {
            if (!_p.HasExited) { _p.Kill(); _p.WaitForExit(5000); }
            _p.Dispose();
        }
        catch (InvalidOperationException) { }
    }
}
