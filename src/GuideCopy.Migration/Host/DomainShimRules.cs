using System.Globalization;
using System.Text.RegularExpressions;
using GuideCopy.MemoryPlane;

namespace GuideCopy.Migration.Host;

/// <summary>
/// The <see cref="ShimPeerRules"/> for one domain's QEMU, from libvirt's own records: the uid
/// of qemu.conf's user, the pid in the pid file libvirt keeps for the domain
/// (<c>&lt;QemuPidDir&gt;/&lt;name&gt;.pid</c>), and the RAM file under libvirt's
/// per-domain memory directory (<c>&lt;memory_backing_dir&gt;/libvirt/qemu/&lt;id&gt;-&lt;short name&gt;/</c>).
/// </summary>
public static class DomainShimRules
{
    /// <summary>libvirt's virDomainDefGetShortName keeps the first 20 characters of the name.</summary>
    private const int ShortNameLength = 20;

    public static ShimPeerRules For(AgentOptions o, QemuUser qemu, string domainName)
    {
        string pidFile = Path.Combine(o.QemuPidDir, domainName + ".pid");
        string shortName = domainName.Length > ShortNameLength ? domainName[..ShortNameLength] : domainName;
        var ramFile = new Regex("^" + Regex.Escape(o.RamDir.TrimEnd('/')) + "/libvirt/qemu/[0-9]+-" + Regex.Escape(shortName) + "/[^/]+$", RegexOptions.CultureInvariant);
        return new ShimPeerRules
        {
            PeerUid = qemu.Uid,
            SocketGid = qemu.Gid,
            Describe = $"the QEMU of {domainName} ({qemu})",
            PeerPid = () => ReadPid(pidFile),
            CheckRamPath = p => ramFile.IsMatch(p) ? null : $"{p} is not a RAM file libvirt keeps for {domainName} (under {o.RamDir}/libvirt/qemu/<id>-{shortName}/)",
        };
    }

    /// <summary>The pid libvirt wrote for the domain; null while there is none (ShimPeerRules.RefuseHello says why that refuses).</summary>
    private static int? ReadPid(string pidFile)
    {
        try
        {
            return int.TryParse(File.ReadAllText(pidFile).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && pid > 0 ? pid : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
