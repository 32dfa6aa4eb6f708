using System.Runtime.InteropServices;

internal static partial class Interop
{
    internal static partial class Sys
    {
        internal const int PRIO_PROCESS = 0;

        // On Linux PRIO_PROCESS with a thread id sets that one thread's nice value (setpriority(2), NOTES).
        [LibraryImport(Libraries.Libc, EntryPoint = "setpriority", SetLastError = true)]
        internal static partial int SetPriority(int which, uint who, int prio);
    }
}
