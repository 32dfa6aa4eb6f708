namespace GuideCopy.Lab;

/// <summary>The system tools the lab is made of, and the Debian package each comes in.</summary>
internal static class RequiredTools
{
    private static readonly (string Tool, string Package)[] Tools =
    [
        ("ip", "iproute2"), ("tc", "iproute2"), ("unshare", "util-linux"), ("nsenter", "util-linux"),
        ("libvirtd", "libvirt-daemon-system"), ("virtlogd", "libvirt-daemon-system"),
        ("virsh", "libvirt-clients"), ("qemu-system-x86_64", "qemu-system-x86"),
    ];

    /// <summary>Throws, naming the packages to install, when a tool is not on PATH.</summary>
    public static void Check()
    {
        var missing = Tools.Where(t => CommandRunner.Which(t.Tool) is null).ToList();
        if (missing.Count > 0)
        {
            throw new LabException(
                "missing " + string.Join(", ", missing.Select(m => $"'{m.Tool}' (package {m.Package})")) +
                "; run scripts/setup (or apt-get install " + string.Join(' ', missing.Select(m => m.Package).Distinct()) + ")");
        }
    }
}
