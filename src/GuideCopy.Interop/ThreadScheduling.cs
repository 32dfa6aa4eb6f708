namespace GuideCopy.Interop;

/// <summary>Scheduling of the calling thread.</summary>
public static class ThreadScheduling
{
    /// <summary>Nice value tried when SCHED_FIFO is refused (no CAP_SYS_NICE, RLIMIT_RTPRIO 0).</summary>
    public const int FallbackNice = -10;

    /// <summary>
    /// Makes the calling thread run as soon as it wakes: SCHED_FIFO at <paramref name="realtimePriority"/>
    /// (1..99), or, where that is refused, nice <see cref="FallbackNice"/>. For threads that sleep
    /// on a socket or a uffd and do a few microseconds of work per wakeup (a page fault in flight):
    /// under the fair class a waking thread may wait for the running one's slice (EEVDF's base
    /// slice is 0.75-3 ms), which on a host whose one CPU also installs a pushed stream at line
    /// rate was most of a remote fault's cost. A SCHED_FIFO thread that spins is still bounded
    /// by the kernel's RT throttling (kernel.sched_rt_runtime_us, 95% by default).
    /// With SCHED_RESET_ON_FORK: a task created by clone inherits its creator's policy, so a thread
    /// some native library starts from this one (pthread_create's default PTHREAD_INHERIT_SCHED)
    /// would stay SCHED_FIFO for the agent's life. (.NET's own new threads were measured to start
    /// in SCHED_OTHER either way; ThreadSchedulingTests.)
    /// Returns what was applied, or null when neither was allowed or <paramref name="realtimePriority"/> is 0.
    /// </summary>
    public static unsafe string? PreferForLatency(int realtimePriority)
    {
        if (realtimePriority <= 0)
        {
            return null;
        }

        int priority = Math.Min(realtimePriority, 99);
        int policy = global::Interop.Sys.SCHED_FIFO | global::Interop.Sys.SCHED_RESET_ON_FORK;
        if (global::Interop.Sys.SchedSetScheduler(0, policy, &priority) == 0)
        {
            return $"SCHED_FIFO {priority}";
        }

        // who = 0 with PRIO_PROCESS is the calling thread on Linux (nice is per thread).
        return global::Interop.Sys.SetPriority(global::Interop.Sys.PRIO_PROCESS, 0, FallbackNice) == 0
            ? $"nice {FallbackNice}"
            : null;
    }

    /// <summary>
    /// Undoes <see cref="PreferForLatency"/> on the calling thread (SCHED_OTHER, nice 0): for a
    /// latency thread whose urgent part is over and whose rest may run long, so it no longer
    /// holds the CPU against threads of the same real-time priority that are urgent now.
    /// </summary>
    public static unsafe void BackToFair()
    {
        int priority = 0;
        global::Interop.Sys.SchedSetScheduler(0, global::Interop.Sys.SCHED_OTHER, &priority);
        global::Interop.Sys.SetPriority(global::Interop.Sys.PRIO_PROCESS, 0, 0);
    }

    /// <summary>
    /// Runs <paramref name="work"/> on a new thread of its own under <see cref="PreferForLatency"/>
    /// and completes with its result. For a short blocking sequence whose every step waits on
    /// another process (a socket, a libvirt call) and whose every wakeup counts, such as a VM's
    /// pause: awaited on the thread pool, each step's continuation waited for a pool thread
    /// and then for the CPU under the fair class (5-6 ms seen between a reply and the next step).
    /// </summary>
    public static Task<T> RunForLatency<T>(string name, int realtimePriority, Func<T> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        new Thread(() =>
        {
            PreferForLatency(realtimePriority);
            try
            {
                done.SetResult(work());
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        }) { IsBackground = true, Name = name }.Start();
        return done.Task;
    }

    /// <summary>A thread's scheduling policy and real-time priority as the kernel reports them (tests, diagnostics).</summary>
    public static (int Policy, int RealtimePriority) Of(int pid, int tid)
    {
        // /proc/PID/task/TID/stat: field 41 is the policy, 40 rt_priority (proc(5)); comm may
        // hold spaces, so fields are counted after its closing parenthesis (field 3 onwards).
        string stat = File.ReadAllText($"/proc/{pid}/task/{tid}/stat");
        string[] f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (int.Parse(f[41 - 3]), int.Parse(f[40 - 3]));
    }
}
