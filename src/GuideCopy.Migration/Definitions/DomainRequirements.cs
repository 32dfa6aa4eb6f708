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

        // The page server, the pager and the guide move 4 KiB pages (PageServerOptions.PageSize is
        // not set from the domain): a hugetlbfs-backed guest would pass every other check and then
        // be refused by the pager mid-migration, so it is refused here, before anything pauses.
        if (d.UsesHugepages)
        {
            problems.Add($"domain '{d.Name}': guest RAM is on huge pages (<hugepages/> in <memoryBacking>), which guide-copy does not move yet; " +
                         "remove <hugepages/> (and restart the VM), or move this VM with --mode postcopy-preempt or --mode precopy");
        }

        return problems;
    }
}
