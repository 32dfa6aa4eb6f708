using System.Diagnostics;
using System.Text;

namespace GuideCopy.Lab;

/// <summary>The result of a finished external command.</summary>
public sealed record CommandResult(string Command, int ExitCode, string StdOut, string StdErr)
{
    public bool Succeeded => ExitCode == 0;
}

/// <summary>
/// Runs the system tools the lab is made of (ip, tc, unshare, nsenter, virsh).
/// The lab is host plumbing, so it drives the same tools an operator would type.
/// </summary>
public static class CommandRunner
{
    public static CommandResult Run(string file, IEnumerable<string> args, TimeSpan? timeout = null, string? stdin = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        string shown = file + " " + string.Join(' ', psi.ArgumentList);
        using var p = Process.Start(psi) ?? throw new LabException($"cannot start '{file}'");
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (stdout) { stdout.AppendLine(e.Data); } } };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (stderr) { stderr.AppendLine(e.Data); } } };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (stdin is not null)
        {
            p.StandardInput.Write(stdin);
            p.StandardInput.Close();
        }

        if (!p.WaitForExit((int)(timeout ?? TimeSpan.FromSeconds(60)).TotalMilliseconds))
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            throw new LabException($"'{shown}' did not finish within {(timeout ?? TimeSpan.FromSeconds(60)).TotalSeconds:0} s");
        }

        p.WaitForExit();
        return new CommandResult(shown, p.ExitCode, stdout.ToString(), stderr.ToString());
    }

    public static CommandResult Run(string file, params string[] args) => Run(file, (IEnumerable<string>)args);

    /// <summary>Runs a command and throws a <see cref="LabException"/> quoting its stderr when it fails.</summary>
    public static string Check(string file, params string[] args)
    {
        var r = Run(file, args);
        if (!r.Succeeded)
        {
            throw new LabException($"'{r.Command}' failed (exit {r.ExitCode}): {r.StdErr.Trim()}");
        }

        return r.StdOut;
    }

    /// <summary>Finds a program on PATH, as the shell would (the lab runs tools by name).</summary>
    public static string? Which(string program)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        foreach (var dir in path.Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, program);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}
