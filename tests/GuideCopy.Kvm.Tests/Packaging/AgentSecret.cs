namespace GuideCopy.Kvm.Tests.Packaging;

/// <summary>A fresh shared secret file, as install-host makes one (32 random bytes, base64, mode 0600).</summary>
internal static class AgentSecret
{
    public static string CreateIn(string dir)
    {
        string path = Path.Combine(dir, "secret");
        File.WriteAllText(path, Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)) + "\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return path;
    }
}
