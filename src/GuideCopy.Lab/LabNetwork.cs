namespace GuideCopy.Lab;

/// <summary>
/// The lab's network: a network namespace per host, joined by a veth pair (the link) with
/// one end in each, each end with the host's address.
/// </summary>
internal static class LabNetwork
{
    /// <summary>Makes both hosts' network namespaces and the veth pair between them, and brings it up.</summary>
    public static void Create(LabLayout layout, Action<string> log)
    {
        log($"network: namespaces {layout.Netns("a")}, {layout.Netns("b")}; veth {layout.Interface("a")} <-> {layout.Interface("b")}");
        foreach (var h in LabLayout.HostNames)
        {
            CommandRunner.Check("ip", "netns", "add", layout.Netns(h));
            CommandRunner.Check("ip", "-n", layout.Netns(h), "link", "set", "lo", "up");
        }

        CommandRunner.Check("ip", "link", "add", layout.Interface("a"), "netns", layout.Netns("a"),
            "type", "veth", "peer", "name", layout.Interface("b"), "netns", layout.Netns("b"));
        foreach (var h in LabLayout.HostNames)
        {
            CommandRunner.Check("ip", "-n", layout.Netns(h), "addr", "add", layout.Address(h) + "/24", "dev", layout.Interface(h));
            CommandRunner.Check("ip", "-n", layout.Netns(h), "link", "set", layout.Interface(h), "up");
        }
    }

    /// <summary>Takes the lab link down (a cut cable) or up again, on host a's end of the veth pair.</summary>
    public static void SetLink(LabLayout layout, bool up) =>
        CommandRunner.Check("ip", "netns", "exec", layout.Netns("a"), "ip", "link", "set", layout.Interface("a"), up ? "up" : "down");
}
