using System.Text.RegularExpressions;
using GuideCopy.Migration.Agent;

namespace GuideCopy.Migration.Controller;

/// <summary>Host-level preflight rules: compares what both agents report. Each problem names its fix.</summary>
public static partial class Preflight
{
    public static IEnumerable<string> Compare(HostFacts source, HostFacts destination, SourcePrepareResult domain)
    {
        if (!destination.ShimPresent)
        {
            yield return $"destination: the QEMU shim {destination.ShimLibrary} is missing: run scripts/host-setup there";
        }

        if (destination.RamDirFileSystem is not ("tmpfs" or "hugetlbfs"))
        {
            yield return $"destination: RAM dir {destination.RamDir} is on {destination.RamDirFileSystem}; set memory_backing_dir in qemu.conf to a tmpfs or hugetlbfs directory";
        }
        else if (destination.RamDirFreeBytes < domain.RamBytes)
        {
            yield return $"destination: RAM dir {destination.RamDir} has {destination.RamDirFreeBytes >> 20} MiB free, the guest needs {domain.RamBytes >> 20} MiB: enlarge the tmpfs";
        }

        if (!destination.UserfaultfdAvailable)
        {
            yield return "destination: QEMU cannot create a userfaultfd: set sysctl vm.unprivileged_userfaultfd=1 (or use libvirt >= 9 with /dev/userfaultfd)";
        }

        int? srcMajor = QemuMajor(source.QemuVersion), dstMajor = QemuMajor(destination.QemuVersion);
        if (srcMajor is null || dstMajor is null)
        {
            yield return $"cannot read QEMU versions ('{source.QemuVersion}' / '{destination.QemuVersion}'): is qemu-system-x86 installed on both hosts?";
        }
        else if (dstMajor < srcMajor)
        {
            yield return $"destination QEMU {destination.QemuVersion} is older than the source's {source.QemuVersion}: its device state may not load; upgrade the destination";
        }
        else if (dstMajor < 8)
        {
            yield return $"QEMU {destination.QemuVersion}: x-ignore-shared skips named-file RAM only from QEMU 8.1; install QEMU 10 from bookworm-backports";
        }

        if (source.Hostname == destination.Hostname && source.PageAdvertise == destination.PageAdvertise)
        {
            yield return $"source and destination are the same host ({source.Hostname}): pick another destination";
        }
    }

    [GeneratedRegex(@"version (\d+)\.")]
    private static partial Regex VersionPattern();

    private static int? QemuMajor(string text) =>
        VersionPattern().Match(text) is { Success: true } m ? int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : null;
}
