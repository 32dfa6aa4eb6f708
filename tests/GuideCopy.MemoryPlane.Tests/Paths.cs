using GuideCopy.Lab;
namespace GuideCopy.MemoryPlane.Tests;

/// <summary>Where the built native parts and the helper assembly are.</summary>
public static class Paths
{
    public static string Repo => Checkout.Root;
    public static string Shim => Path.Combine(Repo, "native/build/shim/libguidecopy-shim.so");
    public static string RamTouch => Path.Combine(Repo, "native/build/tools/ramtouch");
    public static string WpScan => Path.Combine(Repo, "native/build/tools/wp-scan");
    public static string Dotnet => File.Exists("/usr/bin/dotnet") ? "/usr/bin/dotnet" : "dotnet";
    public static string Helper => typeof(HelperMain).Assembly.Location;

    /// <summary>Builds the shim and tools if missing (make -C native shim tools).</summary>
    public static void EnsureNative()
    {
        if (File.Exists(Shim) && File.Exists(RamTouch) && File.Exists(WpScan) && File.Exists(LocalAttacker.ShimPeer)) return;
        var r = CommandRunner.Run("make", "-C", Path.Combine(Repo, "native"), "shim", "tools");
        if (!r.Succeeded) Assert.Fail("make -C native failed: " + r.StdErr);
    }
}
