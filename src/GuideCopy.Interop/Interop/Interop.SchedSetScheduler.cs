using System.Runtime.InteropServices;

internal static partial class Interop
{
    internal static partial class Sys
    {
        internal const int SCHED_OTHER = 0;
        internal const int SCHED_FIFO = 1;
        internal const int SCHED_IDLE = 5;

        // OR-ed into the policy: threads this one creates start in SCHED_OTHER, not its policy
        // (sched(7), "Privileged processes and SCHED_RESET_ON_FORK"; kernel sched_fork).
        internal const int SCHED_RESET_ON_FORK = 0x40000000;

        // The glibc wrapper; with a thread id it sets that one thread's policy, with 0 the calling
        // thread's (sched_setscheduler(2), NOTES: policies are per thread on Linux).
        // param points at struct sched_param { int sched_priority; }, which must be 0 for SCHED_IDLE
        // and 1..99 for SCHED_FIFO.
        [LibraryImport(Libraries.Libc, EntryPoint = "sched_setscheduler", SetLastError = true)]
        internal static unsafe partial int SchedSetScheduler(int pid, int policy, int* param);
    }
}
