namespace GuideCopy.MemoryPlane;

/// <summary>How a <see cref="PageInstaller"/> run ended.</summary>
public enum InstallOutcome
{
    /// <summary>Every page installed (or zero / removed); the uffd was closed and released.</summary>
    Completed,
    /// <summary>The faulting process went away (EOF on the shim socket, or ESRCH).</summary>
    ProcessExited,
    /// <summary>Stopped by the caller.</summary>
    Stopped,
}
