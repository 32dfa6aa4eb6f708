using GuideCopy.Lab;

namespace GuideCopy.Kvm.Tests.Packaging;

/// <summary>Files of the checkout the tests run from (docs/, packaging/, vagrant/, scripts/).</summary>
internal static class RepoFile
{
    public static string Root => Checkout.Root;

    public static string PathOf(string relative) => Path.Combine(Root, relative);

    public static string Read(string relative) => File.ReadAllText(PathOf(relative));
}
