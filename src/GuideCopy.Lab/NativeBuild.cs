namespace GuideCopy.Lab;

/// <summary>Where `make -C native` puts what the lab needs: the guest images and the QEMU shim.</summary>
public static class NativeBuild
{
    /// <summary>native/build/guest, or $GUIDECOPY_GUEST_IMAGES.</summary>
    public static string GuestImages =>
        Environment.GetEnvironmentVariable("GUIDECOPY_GUEST_IMAGES") is { Length: > 0 } d ? d : Path.Combine(Root(), "guest");

    /// <summary>native/build/shim/libguidecopy-shim.so, or $GUIDECOPY_SHIM.</summary>
    public static string Shim =>
        Environment.GetEnvironmentVariable("GUIDECOPY_SHIM") is { Length: > 0 } s ? s : Path.Combine(Root(), "shim", "libguidecopy-shim.so");

    /// <summary>native/build/tools (small C test programs).</summary>
    public static string Tools => Path.Combine(Root(), "tools");

    private static string Root() => Path.Combine(Checkout.Root, "native", "build");
}
