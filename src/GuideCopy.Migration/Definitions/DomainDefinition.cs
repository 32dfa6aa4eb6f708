using System.Xml.Linq;

namespace GuideCopy.Migration.Definitions;

/// <summary>
/// The parts of a libvirt domain XML the migration depends on, read once. The XML itself is kept
/// so the destination and the guide can be derived from it.
/// </summary>
public sealed class DomainDefinition
{
    public static readonly XNamespace QemuNs = "http://libvirt.org/schemas/domain/qemu/1.0";

    private DomainDefinition(XDocument doc, string xml)
    {
        Xml = xml;
        var root = doc.Root!;
        Name = (string?)root.Element("name") ?? "";
        Uuid = (string?)root.Element("uuid") ?? "";
        Type = (string?)root.Attribute("type") ?? "";
        var memory = root.Element("memory");
        MemoryBytes = ToBytes((long?)memory ?? 0, (string?)memory?.Attribute("unit") ?? "KiB");
        var backing = root.Element("memoryBacking");
        MemorySourceType = (string?)backing?.Element("source")?.Attribute("type");
        MemoryAccessMode = (string?)backing?.Element("access")?.Attribute("mode");
        UsesHugepages = backing?.Element("hugepages") is not null;
        Vcpus = int.TryParse(((string?)root.Element("vcpu"))?.Trim(), out int vcpus) && vcpus > 0 ? vcpus : 1;
        Machine = (string?)root.Element("os")?.Element("type")?.Attribute("machine") ?? "";
        Emulator = (string?)root.Element("devices")?.Element("emulator");
        Disks = root.Element("devices")?.Elements("disk")
            .Where(d => (string?)d.Attribute("device") is null or "disk" or "lun")
            .Select(d => new DiskInfo(
                (string?)d.Element("source")?.Attribute("file") ?? (string?)d.Element("source")?.Attribute("dev"),
                (string?)d.Element("driver")?.Attribute("type") ?? "raw",
                (string?)d.Element("target")?.Attribute("dev") ?? "",
                d.Element("readonly") is not null || d.Element("shareable") is not null))
            .ToList() ?? [];
        InterfaceCount = root.Element("devices")?.Elements("interface").Count() ?? 0;
        ConsoleFile = root.Element("devices")?.Elements("serial")
            .Where(s => (string?)s.Attribute("type") == "file")
            .Select(s => (string?)s.Element("source")?.Attribute("path"))
            .FirstOrDefault(p => p is not null);
    }

    public string Xml { get; }

    public string Name { get; }

    public string Uuid { get; }

    public string Type { get; }

    public long MemoryBytes { get; }

    /// <summary>memoryBacking/source/@type: file, anonymous or memfd (null: anonymous).</summary>
    public string? MemorySourceType { get; }

    public string? MemoryAccessMode { get; }

    public bool UsesHugepages { get; }

    /// <summary>The domain's vCPUs (&lt;vcpu&gt;; 1 when absent).</summary>
    public int Vcpus { get; }

    public string Machine { get; }

    public string? Emulator { get; }

    public IReadOnlyList<DiskInfo> Disks { get; }

    public int InterfaceCount { get; }

    /// <summary>A serial console written to a file (the lab's test guests), if any.</summary>
    public string? ConsoleFile { get; }

    public static DomainDefinition Parse(string xml)
    {
        try
        {
            return new DomainDefinition(XDocument.Parse(xml), xml);
        }
        catch (System.Xml.XmlException e)
        {
            throw new FormatException($"domain XML is not well-formed: {e.Message}", e);
        }
    }

    private static long ToBytes(long value, string unit) => unit switch
    {
        "b" or "bytes" => value,
        "KB" => value * 1000,
        "k" or "KiB" => value * 1024,
        "MB" => value * 1000 * 1000,
        "M" or "MiB" => value * 1024 * 1024,
        "GB" => value * 1000L * 1000 * 1000,
        "G" or "GiB" => value * 1024L * 1024 * 1024,
        _ => value * 1024,
    };
}

/// <summary>A disk of the domain: where its data lives and whether it is written.</summary>
public sealed record DiskInfo(string? Source, string Format, string Target, bool ReadOnlyOrShared);
