namespace GuideCopy.Lab;

/// <summary>
/// The source checkout the running assembly was built in (the folder holding GuideCopy.Kvm.sln):
/// where the lab finds native/build and the tests find docs/, packaging/ and the generated bindings.
/// </summary>
public static class Checkout
{
    private static readonly Lazy<string?> Found = new(FindRoot);

    /// <summary>The checkout's root; a <see cref="LabException"/> naming the fix when the assembly runs outside one.</summary>
    public static string Root => Found.Value ?? throw new LabException(
        "cannot find the GuideCopy.Kvm checkout (GuideCopy.Kvm.sln) above " + AppContext.BaseDirectory +
        "; set GUIDECOPY_GUEST_IMAGES and GUIDECOPY_SHIM");

    public static string PathOf(string relative) => Path.Combine(Root, relative);

    private static string? FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "GuideCopy.Kvm.sln")))
            {
                return dir.FullName;
            }
        }

        return null;
    }
}
