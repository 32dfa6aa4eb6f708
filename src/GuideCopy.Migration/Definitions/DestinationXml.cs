using System.Xml.Linq;

namespace GuideCopy.Migration.Definitions;

/// <summary>
/// Derives the XML of the QEMU that receives the VM (and of the guide) from the source's
/// migratable XML: same devices, so QEMU's device state loads (an unknown or missing section
/// fails the load), plus <c>-incoming defer</c> and the shim in QEMU's environment.
/// </summary>
public static class DestinationXml
{
    /// <summary>Environment the shim reads (native/shim/shim.c).</summary>
    public sealed record ShimSettings(string ShimLibrary, string RamPathPrefix, string AgentSocket);

    public static string ForIncoming(string migratableXml, ShimSettings shim)
    {
        var doc = XDocument.Parse(migratableXml);
        var root = doc.Root!;
        var q = DomainDefinition.QemuNs;
        var cmd = root.Element(q + "commandline");
        if (cmd is null)
        {
            cmd = new XElement(q + "commandline");
            root.Add(cmd);
        }

        // QEMU waits for migrate-incoming instead of booting; libvirt starts it with -S anyway.
        cmd.Add(new XElement(q + "arg", new XAttribute("value", "-incoming")));
        cmd.Add(new XElement(q + "arg", new XAttribute("value", "defer")));
        // libvirt passes qemu:env to QEMU's environment (the domain is tainted custom-argv).
        cmd.Add(Env("LD_PRELOAD", shim.ShimLibrary));
        cmd.Add(Env("GUIDECOPY_RAM_PATH", shim.RamPathPrefix));
        cmd.Add(Env("GUIDECOPY_AGENT_SOCKET", shim.AgentSocket));
        return doc.ToString();

        XElement Env(string name, string value) =>
            new(q + "env", new XAttribute("name", name), new XAttribute("value", value));
    }
}
