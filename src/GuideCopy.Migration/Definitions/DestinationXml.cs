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

    /// <summary>The environment variables the shim reads; the ones we add and take away.</summary>
    private static readonly string[] OurEnv = ["LD_PRELOAD", "GUIDECOPY_RAM_PATH", "GUIDECOPY_AGENT_SOCKET", "GUIDECOPY_TRACK_WRITES"];

    /// <summary>What belongs to one migration into a QEMU: its RAM registration and its agent's socket.</summary>
    private static readonly string[] OneMigrationsEnv = ["GUIDECOPY_RAM_PATH", "GUIDECOPY_AGENT_SOCKET"];

    /// <summary>
    /// The live XML of a VM that arrived by guide-copy still carries our -incoming and shim
    /// settings (they are part of its running QEMU's definition). Any later migration — ours or
    /// libvirt's — must start from the XML without the ones of that migration, or the next QEMU
    /// would wait for an incoming stream and a shim socket that belong to a finished migration.
    /// The shim with GUIDECOPY_TRACK_WRITES alone stays (with nothing else set it only keeps its
    /// tracking uffd): the VM's next QEMU can still warm up, whichever mode moved it.
    /// </summary>
    public static string WithoutOurAdditions(string xml)
    {
        var doc = XDocument.Parse(xml);
        var q = DomainDefinition.QemuNs;
        bool tracked = doc.Root!.Element(q + "commandline")?.Elements(q + "env")
            .Any(e => (string?)e.Attribute("name") == "GUIDECOPY_TRACK_WRITES" && (string?)e.Attribute("value") == "1") ?? false;
        if (!RemoveOurAdditions(doc.Root!, tracked ? OneMigrationsEnv : OurEnv))
        {
            return xml;
        }

        return doc.ToString();
    }

    private static bool RemoveOurAdditions(XElement root, string[] env)
    {
        var q = DomainDefinition.QemuNs;
        if (root.Element(q + "commandline") is not { } cmd)
        {
            return false;
        }

        bool changed = false;
        var args = cmd.Elements(q + "arg").ToList();
        for (int i = 0; i + 1 < args.Count; i++)
        {
            if ((string?)args[i].Attribute("value") == "-incoming" && (string?)args[i + 1].Attribute("value") == "defer")
            {
                args[i].Remove();
                args[i + 1].Remove();
                changed = true;
                i++;
            }
        }

        foreach (var e in cmd.Elements(q + "env").Where(e => env.Contains((string?)e.Attribute("name"))).ToList())
        {
            e.Remove();
            changed = true;
        }

        if (!cmd.HasElements)
        {
            cmd.Remove();
        }

        return changed;
    }

    /// <summary>The XML of a QEMU that waits for an incoming stream; with the shim in its environment unless <paramref name="shim"/> is null.</summary>
    public static string ForIncoming(string migratableXml, ShimSettings? shim)
    {
        var doc = XDocument.Parse(migratableXml);
        var root = doc.Root!;
        // Without a shim of ours (QEMU's own post-copy), the tracking WithoutOurAdditions kept stays.
        RemoveOurAdditions(root, shim is null ? OneMigrationsEnv : OurEnv);
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
        if (shim is null)
        {
            return doc.ToString();
        }

        // libvirt passes qemu:env to QEMU's environment (the domain is tainted custom-argv).
        cmd.Add(Env("LD_PRELOAD", shim.ShimLibrary));
        cmd.Add(Env("GUIDECOPY_RAM_PATH", shim.RamPathPrefix));
        cmd.Add(Env("GUIDECOPY_AGENT_SOCKET", shim.AgentSocket));
        // The VM's next migration away from here can warm up: the shim keeps a uffd for it.
        cmd.Add(Env("GUIDECOPY_TRACK_WRITES", "1"));
        return doc.ToString();

        XElement Env(string name, string value) =>
            new(q + "env", new XAttribute("name", name), new XAttribute("value", value));
    }
}
