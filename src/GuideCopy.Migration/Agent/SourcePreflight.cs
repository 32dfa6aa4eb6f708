using GuideCopy.Migration.Control;
using GuideCopy.Migration.Definitions;
using GuideCopy.Migration.Host;
using LibvirtSharp;
using LibvirtSharp.Native;
using Mono.Unix.Native;

namespace GuideCopy.Migration.Agent;

/// <summary>The source host's preflight: what the controller learns of a domain before anything of it is touched.</summary>
public static class SourcePreflight
{
    /// <summary>The largest page guide-copy moves: x86's 2 MiB huge page.</summary>
    private const ulong MaxPageBytes = 2 << 20;

    /// <summary>Everything about the domain the controller needs before it pauses anything.</summary>
    public static SourcePrepareResult Prepare(AgentOptions o, string name)
    {
        using var conn = Connection.Open(o.LibvirtUri);
        using var dom = conn.TryLookupDomain(name)
            ?? throw new AgentException($"domain '{name}' not found on {conn.Hostname} ({o.LibvirtUri})");
        if (!dom.IsActive)
        {
            throw new AgentException($"domain '{name}' is not running: start it, or move its definition instead of migrating");
        }

        var def = DomainDefinition.Parse(dom.GetXml());
        var problems = DomainRequirements.Check(def).ToList();
        string ramPath = "";
        string fs = "";
        if (def.MemorySourceType == "file")
        {
            ramPath = FindRamFile(o, dom.Id ?? 0, name);
            if (ramPath.Length == 0)
            {
                problems.Add($"domain '{name}': its RAM file is not under {o.RamDir}: set memory_backing_dir = \"{o.RamDir}\" in /etc/libvirt/qemu.conf (a tmpfs or hugetlbfs directory) and restart the domain");
            }
            else
            {
                fs = HostFactsReader.FileSystemOf(Path.GetDirectoryName(ramPath)!).FileSystem;
                if (fs is not ("tmpfs" or "hugetlbfs"))
                {
                    problems.Add($"domain '{name}': its RAM file {ramPath} is on {fs}; userfaultfd MISSING mode needs tmpfs or hugetlbfs: point memory_backing_dir in qemu.conf at one");
                }
                else if (fs == "hugetlbfs" && Syscall.statvfs(ramPath, out var st) == 0 && st.f_bsize > MaxPageBytes)
                {
                    // A page moves whole (one fault, one frame, one UFFDIO_COPY): a 1 GiB page would
                    // be a 1 GiB frame and a stall of seconds on the first touch of any byte of it.
                    problems.Add($"domain '{name}': its RAM is on {st.f_bsize >> 20} MiB huge pages; guide-copy moves pages of at most 2 MiB: " +
                                 "mount the hugetlbfs of memory_backing_dir with pagesize=2M, or move this VM with --mode postcopy-preempt or --mode precopy");
                }
            }
        }

        bool persistent = dom.IsPersistent;
        return new SourcePrepareResult(
            def.Name, def.Uuid,
            DestinationXml.WithoutOurAdditions(dom.GetXml(virDomainXMLFlags.VIR_DOMAIN_XML_MIGRATABLE)),
            persistent ? dom.GetXml(virDomainXMLFlags.VIR_DOMAIN_XML_INACTIVE | virDomainXMLFlags.VIR_DOMAIN_XML_MIGRATABLE) : "",
            persistent, ramPath, def.MemoryBytes, fs, problems);
    }

    /// <summary>libvirt names file RAM &lt;memory_backing_dir&gt;/libvirt/qemu/&lt;id&gt;-&lt;name&gt;/&lt;block&gt;.</summary>
    private static string FindRamFile(AgentOptions o, uint id, string name)
    {
        string dir = Path.Combine(o.RamDir, "libvirt", "qemu", $"{id}-{name}");
        if (!Directory.Exists(dir))
        {
            return "";
        }

        var files = Directory.GetFiles(dir);
        return files.FirstOrDefault(f => Path.GetFileName(f) is "pc.ram" or "pc.ram0") ?? (files.Length == 1 ? files[0] : "");
    }
}
