namespace GuideCopy.Guest;

/// <summary>What <see cref="GuestDiskRing"/> found on a test guest's disk.</summary>
/// <param name="LastSeq">The newest record on the disk (0: the guest wrote none).</param>
/// <param name="Records">Records checked: the newest and its predecessors still in the ring.</param>
/// <param name="Problems">What is wrong, one line each; empty when the ring is one guest's writes, whole and in order.</param>
public sealed record DiskRingCheck(long LastSeq, int Records, IReadOnlyList<string> Problems)
{
    public bool IsIntact => Problems.Count == 0;
}
