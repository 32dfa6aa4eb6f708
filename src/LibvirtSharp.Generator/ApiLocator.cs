using System.Diagnostics;

namespace LibvirtSharp.Generator;

/// <summary>Finds the API XMLs the way libvirt-python does: through pkg-config variables of libvirt-dev.</summary>
public static class ApiLocator
{
    public static string PkgConfig(string variable, string package)
    {
        var psi = new ProcessStartInfo("pkg-config", ["--variable=" + variable, package]) { RedirectStandardOutput = true };
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start pkg-config");
        string path = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        if (p.ExitCode != 0 || path.Length == 0)
            throw new InvalidOperationException($"pkg-config --variable={variable} {package} failed; install libvirt-dev or pass the path");
        return path;
    }
}
