namespace GuideCopy.Interop;

/// <summary>Scheduling priority of another process, thread by thread.</summary>
public static class ProcessPriority
{
    /// <summary>
    /// Sets the nice value of every current thread of <paramref name="pid"/>: Linux keeps nice
    /// per thread, and threads created later inherit their creator's. Returns the threads set.
    /// </summary>
    public static int SetNice(int pid, int nice)
    {
        int set = 0;
        string tasks = $"/proc/{pid}/task";
        if (!Directory.Exists(tasks))
        {
            return 0;
        }

        foreach (var dir in Directory.EnumerateDirectories(tasks))
        {
            if (uint.TryParse(Path.GetFileName(dir), out uint tid) && global::Interop.Sys.SetPriority(global::Interop.Sys.PRIO_PROCESS, tid, nice) == 0)
            {
                set++;
            }
        }

        return set;
    }
}
