namespace GuideCopy.MemoryPlane;

/// <summary>Why a page was sent, in the source's priority order (docs/ARCHITECTURE.md step 5).</summary>
public enum PageOrigin : byte
{
    /// <summary>(a) a destination fault asked for it.</summary>
    Demand = 1,
    /// <summary>(b) the push queue (the guide's access log).</summary>
    Push = 2,
    /// <summary>(c) near a recent demand fault.</summary>
    Locality = 3,
    /// <summary>(d) everything else, in address order.</summary>
    Background = 4,
    /// <summary>
    /// Before the pause, while the source still ran (the warm-up): held apart at the destination
    /// until the source says which of them it wrote since (the WarmVerdict frame).
    /// </summary>
    Warm = 5,
}
