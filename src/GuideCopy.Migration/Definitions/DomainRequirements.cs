namespace GuideCopy.Migration.Definitions;

/// <summary>
/// The requirements a domain must meet before anything is paused (docs/ARCHITECTURE.md,
/// "Requirements on a domain"). Each problem is one sentence that names the fix.
/// </summary>
public static class DomainRequirements
{
    public static IReadOnlyList<string> Check(DomainDefinition d)
    {
        var problems = new List<string>();
        // uffd MISSING mode needs shmem/hugetlbfs, and x-ignore-shared (QEMU >= 8.1) skips only
        // shared named-file RAM: memfd or anonymous RAM would be copied in the device state.
        if (d.MemorySourceType != "file")
        {
            problems.Add($"domain '{d.Name}': guest RAM is {(d.MemorySourceType ?? "anonymous")} memory; guide-copy needs a named RAM file: " +
                         "add <memoryBacking><source type='file'/><access mode='shared'/></memoryBacking> to the domain XML");
        }
        else if (d.MemoryAccessMode != "shared")
        {
            problems.Add($"domain '{d.Name}': guest RAM is a private file mapping; add <access mode='shared'/> to <memoryBacking> " +
                         "(QEMU's x-ignore-shared and the destination's userfaultfd need a shared mapping)");
        }

        // With <hugepages/> libvirt gives QEMU a directory as mem-path (qemuGetDomainHugepagePath):
        // QEMU's RAM is then an unlinked temp file the source cannot hold, and libvirt sets
        // prealloc=on, which would fault every page into the destination's pager before the
        // device state exists. Huge pages as a named file come from memory_backing_dir on hugetlbfs.
        if (d.UsesHugepages)
        {
            problems.Add($"domain '{d.Name}': <hugepages/> makes libvirt give QEMU unnamed, preallocated RAM, which guide-copy cannot serve; " +
                         "for 2 MiB pages remove <hugepages/> and point memory_backing_dir in qemu.conf at a hugetlbfs mount (on both hosts), " +
                         "or move this VM with --mode postcopy-preempt or --mode precopy");
        }

        return problems;
    }
}
