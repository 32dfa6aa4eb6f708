using System.Globalization;

namespace GuideCopy.Lab;

/// <summary>
/// The machine's pool of 2 MiB huge pages (<c>vm.nr_hugepages</c>), grown for the lab's huge-page
/// guests and shrunk back by what the lab added when it goes down: the pool is the machine's, and
/// pages reserved in it are gone for every other use (the tmpfs guests included).
/// </summary>
public static class LabHugePages
{
    public const int PageBytes = 2 << 20;

    private const string PoolFile = "/proc/sys/vm/nr_hugepages";
    private const string FreeFile = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";

    /// <summary>Free 2 MiB pages in the machine's pool.</summary>
    public static long Free => ReadNumber(FreeFile);

    /// <summary>
    /// Grows the pool until <paramref name="pages"/> are free. The kernel may give fewer than
    /// asked (fragmented memory): that is an error naming what to do, not a guest that fails later.
    /// </summary>
    public static void EnsureFree(LabLayout layout, long pages)
    {
        long free = Free;
        if (free >= pages)
        {
            return;
        }

        long before = ReadNumber(PoolFile), want = before + (pages - free);
        File.WriteAllText(PoolFile, want.ToString(CultureInfo.InvariantCulture));
        long got = ReadNumber(PoolFile);
        Record(layout, got - before);
        if (got < want)
        {
            throw new LabException($"the kernel gave {got - before} of {want - before} more 2 MiB huge pages (vm.nr_hugepages {got}, asked {want}): " +
                                   "free memory (echo 1 > /proc/sys/vm/compact_memory) or boot the guest without huge pages");
        }
    }

    /// <summary>Shrinks the pool by what this lab added (pages still in use stay until freed: the kernel makes them surplus).</summary>
    public static void Release(LabLayout layout)
    {
        string file = RecordFile(layout);
        if (!File.Exists(file))
        {
            return;
        }

        long added = File.ReadAllLines(file).Sum(l => long.TryParse(l, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n) ? n : 0);
        long now = ReadNumber(PoolFile);
        File.WriteAllText(PoolFile, Math.Max(0, now - added).ToString(CultureInfo.InvariantCulture));
        File.Delete(file);
    }

    private static string RecordFile(LabLayout layout) => Path.Combine(layout.StateDir, "hugepages-added");

    private static void Record(LabLayout layout, long added)
    {
        if (added > 0)
        {
            Directory.CreateDirectory(layout.StateDir);
            File.AppendAllText(RecordFile(layout), added.ToString(CultureInfo.InvariantCulture) + "\n");
        }
    }

    private static long ReadNumber(string file) =>
        File.Exists(file) && long.TryParse(File.ReadAllText(file).Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long n) ? n : 0;
}
