namespace GuideCopy.Interop;

/// <summary>Scheduling priority of another process, thread by thread.</summary>
public static class ProcessPriority
{
    /// <summary>
    /// Sets the nice value of every current thread of <paramref name="pid"/>: Linux keeps nice
    /// per thread, and threads created later inherit their creator's. Returns the threads set.
    /// </summary>
    public static int SetNice(int pid, int nice) =>
        ForEachThread(pid, tid => global::Interop.Sys.SetPriority(global::Interop.Sys.PRIO_PROCESS, (uint)tid, nice) == 0);

    /// <summary>
    /// Puts every current thread of <paramref name="pid"/> under SCHED_IDLE: it runs only when no
    /// other task wants the CPU, and any waking normal task preempts it at once (the fair class's
    /// wakeup check preempts a SCHED_IDLE current for a non-idle waker unconditionally), which a
    /// nice value alone does not give: a nice-19 thread may finish its slice first. Threads created
    /// later inherit the policy. Returns the threads set.
    /// </summary>
    public static unsafe int SetIdlePolicy(int pid)
    {
        return ForEachThread(pid, tid =>
        {
            int priority = 0;
            return global::Interop.Sys.SchedSetScheduler(tid, global::Interop.Sys.SCHED_IDLE, &priority) == 0;
        });
    }

    private static int ForEachThread(int pid, Func<int, bool> set)
    {
        int done = 0;
        string tasks = $"/proc/{pid}/task";
        if (!Directory.Exists(tasks))
        {
            return 0;
        }

        foreach (var dir in Directory.EnumerateDirectories(tasks))
        {
            if (int.TryParse(Path.GetFileName(dir), out int tid) && set(tid))
            {
                done++;
            }
        }

        return done;
    }
}
