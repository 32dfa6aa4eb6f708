using GuideCopy.Lab;

namespace LibvirtSharp.Tests;

/// <summary>Locates the repository (the folder holding GuideCopy.Kvm.sln) from the test binary.</summary>
internal static class RepoPaths
{
    public static string Root => Checkout.Root;

    public static string GeneratedDir => Path.Combine(Root, "src", "LibvirtSharp", "Generated");
}
