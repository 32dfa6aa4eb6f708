using GuideCopy.Migration.Control;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using Mono.Unix.Native;

namespace GuideCopy.Migration.Agent;

/// <summary>The source's hold on its paused VM's RAM: a hard link under <see cref="AgentOptions.RamDir"/>, journaled as <see cref="JournalEntry.FrozenRam"/>, removed when the migration no longer needs it.</summary>
internal static class FrozenRamLink
{
    /// <summary>
    /// Our own hard link to the RAM file, in the same file system: libvirt removes its path when
    /// the source QEMU goes (a crash, a destroy), and the link keeps the frozen content until the
    /// destination has every page, across agent restarts too (an open fd would die with us).
    /// </summary>
    public static string Hold(AgentOptions options, string migrationId, string ramPath)
    {
        string dir = Path.Combine(options.RamDir, "guidecopy-frozen");
        Directory.CreateDirectory(dir);
        File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string link = Path.Combine(dir, migrationId + ".ram");
        File.Delete(link);
        if (Syscall.link(ramPath, link) != 0)
        {
            throw new AgentException($"source: cannot hold the frozen RAM {ramPath} ({Stdlib.GetLastError()}): the RAM dir must be one tmpfs or hugetlbfs");
        }

        return link;
    }

    /// <summary>Removes the link <paramref name="entry"/> journaled, if any.</summary>
    public static void Release(JournalEntry? entry)
    {
        if (entry?.FrozenRam is { } frozen)
        {
            File.Delete(frozen);
        }
    }
}
