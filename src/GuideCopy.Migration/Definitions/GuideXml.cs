using System.Xml.Linq;

namespace GuideCopy.Migration.Definitions;

/// <summary>
/// The guide's domain XML: the source's devices exactly (the device state must load into it:
/// an unknown or missing section fails the load), but its own name and UUID, every NIC's link
/// down (its traffic never leaves the host), its console in the work directory, and its disks
/// replaced by throw-away images so its writes never reach the VM's disks (GuideRun.CreateOverlay says why blank).
/// </summary>
public static class GuideXml
{
    /// <param name="overlayFor">Maps a writable disk's source path to the overlay the guide writes instead.</param>
    public static string From(string incomingXml, string guideName, string guideUuid, string consolePath, Func<DiskInfo, string> overlayFor)
    {
        var doc = XDocument.Parse(incomingXml);
        var root = doc.Root!;
        root.Element("name")!.Value = guideName;
        root.Element("uuid")?.Remove();
        root.Element("name")!.AddAfterSelf(new XElement("uuid", guideUuid)); // the caller's: its sockets' directory is named after it
        var devices = root.Element("devices")!;
        foreach (var nic in devices.Elements("interface"))
        {
            nic.Element("link")?.Remove();
            nic.Add(new XElement("link", new XAttribute("state", "down")));
        }

        foreach (var serial in devices.Elements("serial").Concat(devices.Elements("console")))
        {
            if ((string?)serial.Attribute("type") == "file" && serial.Element("source") is { } src)
            {
                src.SetAttributeValue("path", consolePath);
                src.SetAttributeValue("append", null);
            }
        }

        foreach (var disk in devices.Elements("disk").Where(d => (string?)d.Attribute("device") is null or "disk" or "lun").ToList())
        {
            var info = new DiskInfo(
                (string?)disk.Element("source")?.Attribute("file"),
                (string?)disk.Element("driver")?.Attribute("type") ?? "raw",
                (string?)disk.Element("target")?.Attribute("dev") ?? "",
                disk.Element("readonly") is not null || disk.Element("shareable") is not null);
            if (info.Source is null || info.ReadOnlyOrShared)
            {
                continue;
            }

            disk.Element("source")!.SetAttributeValue("file", overlayFor(info));
            disk.Element("driver")?.SetAttributeValue("type", "qcow2");
            disk.Element("backingStore")?.Remove();
        }

        return doc.ToString();
    }
}
