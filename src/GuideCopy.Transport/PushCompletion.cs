using System.Diagnostics;
using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>
/// Completion detection on the push lane: the source sends <see cref="FrameType.Complete"/> when
/// it believes it sent everything. Pages still missing a while after that were sent on a lane that
/// died: the push lane is reconnected, and the resume bitmap makes the source send them again.
/// Only the lane's own thread calls it.
/// </summary>
internal sealed class PushCompletion
{
    /// <summary>How long after <see cref="FrameType.Complete"/> pages may still be missing before the lane is reconnected, in ms.</summary>
    private const int GraceMs = 1000;

    private long _completeAt;

    /// <summary>The source sent <see cref="FrameType.Complete"/>.</summary>
    public void Heard() => _completeAt = Stopwatch.GetTimestamp();

    /// <summary>A new push lane: the source has not said Complete on it yet.</summary>
    public void Reset() => _completeAt = 0;

    /// <summary>The source said Complete over <see cref="GraceMs"/> ago, and pages are still not done.</summary>
    public bool Overdue(PageBitmap done) =>
        _completeAt != 0 && !done.IsFull && Stopwatch.GetElapsedTime(_completeAt).TotalMilliseconds > GraceMs;
}
