namespace LibvirtSharp.Tests;

/// <summary>Open file descriptors and resident memory of this process, from /proc/self.</summary>
internal readonly record struct ResourceUse(int OpenFds, long RssBytes)
{
    public static ResourceUse Now()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        int fds = Directory.GetFiles("/proc/self/fd").Length;
        // statm: size resident shared ... in pages.
        long pages = long.Parse(File.ReadAllText("/proc/self/statm").Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        return new ResourceUse(fds, pages * Environment.SystemPageSize);
    }
}
