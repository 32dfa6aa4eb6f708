namespace GuideCopy.Kvm.Tests.Packaging;

/// <summary>Files of the checkout the tests run from (docs/, packaging/, vagrant/, scripts/).</summary>
internal static class RepoFile
{
    public static string Root { get; } = FindRoot();

    public static string PathOf(string relative) => Path.Combine(Root, relative);

    public static string Read(string relative) => File.ReadAllText(PathOf(relative));

    private static string FindRoot()
    {
        // Walk up from the test assembly to the checkout holding GuideCopy.Kvm.sln.
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "GuideCopy.Kvm.sln")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException("no GuideCopy.Kvm.sln above " + AppContext.BaseDirectory);
    }
}
