namespace GuideCopy.Lab;

/// <summary>Stops the processes left in a lab host at teardown, and waits until they are gone.</summary>
internal static class ProcessReaper
{
    /// <summary>SIGTERM, a grace period (libvirtd shuts down cleanly), then SIGKILL.</summary>
    public static void Stop(IReadOnlyCollection<int> pids)
    {
        foreach (var pid in pids)
        {
            CommandRunner.Run("kill", "-TERM", pid.ToString());
        }

        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline && pids.Any(p => Directory.Exists($"/proc/{p}")))
        {
            Thread.Sleep(100);
        }

        foreach (var pid in pids.Where(p => Directory.Exists($"/proc/{p}")))
        {
            CommandRunner.Run("kill", "-KILL", pid.ToString());
        }

        // A killed process stays in /proc as a zombie until its parent reaps it; it has let go of
        // its namespaces and files already (do_exit), so waiting for it would only wait for its parent.
        deadline = DateTime.UtcNow.AddSeconds(5);
        while (DateTime.UtcNow < deadline && pids.Any(p => Directory.Exists($"/proc/{p}") && !IsZombie(p)))
        {
            Thread.Sleep(50);
        }
    }

    private static bool IsZombie(int pid)
    {
        try
        {
            // The state field follows the command name, which is in parentheses and may itself hold ')'.
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z');
        }
        catch (IOException)
        {
            return true;
        }
    }
}
