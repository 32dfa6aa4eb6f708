namespace LibvirtSharp.Tests;

/// <summary>Locates the repository (the folder holding GuideCopy.Kvm.sln) from the test binary.</summary>
internal static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    public static string GeneratedDir => Path.Combine(Root, "src", "LibvirtSharp", "Generated");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "GuideCopy.Kvm.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("GuideCopy.Kvm.sln not found above " + AppContext.BaseDirectory);
    }
}
