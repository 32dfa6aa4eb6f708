using System.Diagnostics;
using GuideCopy.Lab;

namespace GuideCopy.Kvm.Tests;

/// <summary>Runs the real `guidecopy` CLI as a user would, as a separate process.</summary>
internal static class CliProcess
{
    public static string DllPath
    {
        get
        {
            string local = Path.Combine(AppContext.BaseDirectory, "guidecopy.dll");
            return File.Exists(local) ? local : throw new FileNotFoundException("guidecopy.dll not next to the tests", local);
        }
    }

    public static CommandResult Run(params string[] args) => Run(null, args);

    public static CommandResult Run(IDictionary<string, string>? env, params string[] args)
    {
        if (env is null)
        {
            return CommandRunner.Run("dotnet", [DllPath, .. args], TimeSpan.FromMinutes(5));
        }

        // env(1) sets the child's environment without touching this process's.
        return CommandRunner.Run("env", [.. env.Select(kv => $"{kv.Key}={kv.Value}"), "dotnet", DllPath, .. args], TimeSpan.FromMinutes(5));
    }

    /// <summary>Starts the CLI without waiting (to signal or kill it mid-run); stdout and stderr redirected.</summary>
    public static Process Start(IReadOnlyDictionary<string, string> env, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (k, v) in env)
        {
            psi.Environment[k] = v;
        }

        psi.ArgumentList.Add(DllPath);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        return Process.Start(psi)!;
    }
}
