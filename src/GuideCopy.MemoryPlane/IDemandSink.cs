namespace GuideCopy.MemoryPlane;

/// <summary>Where the fault loop sends pages it cannot resolve locally.</summary>
public interface IDemandSink
{
    /// <summary>Called on the fault thread with pages to fetch; must not block for long.</summary>
    void RequestPages(ReadOnlySpan<long> pages);
}
