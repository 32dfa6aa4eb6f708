namespace GuideCopy.Cli.Configuration;

/// <summary>The "Controller" section: what `guidecopy migrate`, `compare`, `jobs` and `abort` read.</summary>
internal sealed class ControllerOptions
{
    /// <summary>The agents' shared secret, for a controller on any host (`--secret-file` wins; lab: hosts use the lab's own).</summary>
    public string SecretFile { get; set; } = "/etc/guidecopy/secret";

    /// <summary>Guide mode's page lanes in clear text after their handshake (`--insecure-lanes`): closed lab links only.</summary>
    public bool InsecureLanes { get; set; }

    /// <summary>Guide mode's page packing on the lanes (`--compress`): auto, lz4 or off.</summary>
    public string Compression { get; set; } = "auto";
}
