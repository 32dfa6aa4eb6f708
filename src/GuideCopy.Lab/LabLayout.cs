namespace GuideCopy.Lab;

/// <summary>
/// Where a lab named <see cref="Name"/> keeps its files and namespaces. Every name derives from
/// the lab name, so two labs (say the demo's and a test run's) can be up side by side.
/// </summary>
public sealed class LabLayout
{
    /// <summary>The lab every command uses unless told otherwise (GUIDECOPY_LAB or --name).</summary>
    public const string DefaultName = "gc";

    /// <summary>The lab's hosts, in the order of <see cref="LabState.Hosts"/>.</summary>
    internal static readonly string[] HostNames = ["a", "b"];

    public LabLayout(string name)
    {
        // Interface names are at most 15 bytes: "<name>-a0" leaves 12 for the name.
        if (name.Length is 0 or > 12 || !name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c)))
        {
            throw new LabException($"lab name '{name}' is not valid: use 1-12 lowercase letters or digits");
        }

        Name = name;
    }

    public string Name { get; }

    /// <summary>Private per-host directories, the shared directory (images, disks, consoles).</summary>
    public string DataDir => $"/var/lib/guidecopy-lab/{Name}";

    /// <summary>The lab's state file; present exactly while the lab is up.</summary>
    public string StateDir => $"/run/guidecopy-lab/{Name}";

    public string StateFile => Path.Combine(StateDir, "state.json");

    /// <summary>Storage both hosts reach, as shared storage does for a libvirt live migration.</summary>
    public string SharedDir => Path.Combine(DataDir, "shared");

    public string HostDir(string host) => Path.Combine(DataDir, host);

    public string Netns(string host) => $"{Name}-{host}";

    public string Interface(string host) => $"{Name}-{host}0";

    /// <summary>The name of the host's cpuset cgroup (<see cref="LabCpus"/>).</summary>
    internal string CgroupName(string host) => $"guidecopy-lab-{Name}-{host}";

    /// <summary>A /24 per lab in 10.77.0.0/16, picked from the name so labs do not overlap.</summary>
    public int SubnetIndex
    {
        get
        {
            uint h = 2166136261;
            foreach (char c in Name)
            {
                h = (h ^ c) * 16777619;
            }

            return (int)(h % 250) + 1;
        }
    }

    public string Address(string host) => $"10.77.{SubnetIndex}.{(host == "a" ? 1 : 2)}";
}
