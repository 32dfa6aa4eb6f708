using GuideCopy.Migration.Host;
using LibvirtSharp;
using Mono.Unix.Native;

namespace GuideCopy.Migration.Agent;

/// <summary>Reads the host facts the controller's preflight compares (versions, RAM dir, shim, uffd).</summary>
public static class HostFactsReader
{
    public static HostFacts Read(AgentOptions o)
    {
        using var conn = Connection.Open(o.LibvirtUri);
        string qemu = "";
        try
        {
            var psi = new System.Diagnostics.ProcessStartInfo("qemu-system-x86_64", "--version") { RedirectStandardOutput = true };
            using var p = System.Diagnostics.Process.Start(psi)!;
            qemu = p.StandardOutput.ReadLine() ?? "";
            p.WaitForExit();
        }
        catch (System.ComponentModel.Win32Exception)
        {
            qemu = "not installed";
        }

        (string fs, long free) = FileSystemOf(o.RamDir);
        return new HostFacts(
            conn.Hostname,
            typeof(HostFactsReader).Assembly.GetName().Version?.ToString() ?? "0",
            qemu,
            conn.LibVersion,
            o.RamDir,
            fs,
            free,
            File.Exists(o.ShimLibrary),
            o.ShimLibrary,
            // libvirt >= 9.x hands QEMU /dev/userfaultfd; older needs the sysctl for user libvirt-qemu.
            File.Exists("/dev/userfaultfd") || ReadSysctl("vm/unprivileged_userfaultfd") == "1",
            o.AdvertisedPageEndpoint());
    }

    /// <summary>The file system type name of a directory (tmpfs, hugetlbfs, ext4 ...) and its free bytes.</summary>
    public static (string FileSystem, long FreeBytes) FileSystemOf(string path)
    {
        if (!Directory.Exists(path))
        {
            return ("missing", 0);
        }

        // DriveInfo resolves the mount holding the path and reports its fs type from /proc/self/mountinfo.
        var drive = new DriveInfo(path);
        return drive.DriveFormat == "hugetlbfs" ? ("hugetlbfs", HugePagesAvailable(path)) : (drive.DriveFormat, drive.AvailableFreeSpace);
    }

    /// <summary>
    /// Bytes of huge pages a new mapping can still get: a hugetlbfs mount without size= reports no
    /// free blocks (hugetlbfs_statfs fills them only from a size limit), so this reads the pool of
    /// the mount's page size; pages reserved by mappings not yet touched (resv) are not free.
    /// </summary>
    private static long HugePagesAvailable(string path)
    {
        if (Syscall.statvfs(path, out var st) != 0)
        {
            return 0;
        }

        long pageBytes = (long)st.f_bsize;
        if (st.f_blocks > 0)
        {
            return (long)st.f_bavail * pageBytes;
        }

        string pool = $"/sys/kernel/mm/hugepages/hugepages-{pageBytes >> 10}kB/";
        return Math.Max(0, ReadNumber(pool + "free_hugepages") - ReadNumber(pool + "resv_hugepages")) * pageBytes;
    }

    private static long ReadNumber(string file) =>
        File.Exists(file) && long.TryParse(File.ReadAllText(file).Trim(), System.Globalization.CultureInfo.InvariantCulture, out long n) ? n : 0;

    private static string ReadSysctl(string name)
    {
        try
        {
            return File.ReadAllText("/proc/sys/" + name).Trim();
        }
        catch (IOException)
        {
            return "";
        }
    }
}
