namespace GuideCopy.Migration.Baselines;

/// <summary>
/// A QMP-driven post-copy failed after the switch: the VM runs on the destination and the source
/// cannot take it back (the report's FailedAfterCommit, exit 12), unlike a failure before it.
/// </summary>
public sealed class FailedAfterSwitchException(string message) : InvalidOperationException(message);
