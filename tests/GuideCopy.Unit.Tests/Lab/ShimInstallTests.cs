using GuideCopy.Lab;

namespace GuideCopy.Unit.Tests.Lab;

/// <summary>A lab brought up again must not pull the shim from under the QEMUs that have it mapped.</summary>
[TestFixture]
public sealed class ShimInstallTests
{
    [Test]
    public void AReaderOfTheInstalledShimKeepsItsWholeFileWhenANewOneIsInstalled()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"gc-shim-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string installed = Path.Combine(dir, "lib", "libguidecopy-shim.so");
            string first = Path.Combine(dir, "first.so"), second = Path.Combine(dir, "second.so");
            byte[] old = Enumerable.Range(0, 64 * 1024).Select(i => (byte)i).ToArray();
            File.WriteAllBytes(first, old);
            File.WriteAllBytes(second, Enumerable.Repeat((byte)0xEE, 1000).ToArray());
            LabAgents.InstallShim(first, installed);

            // A running QEMU holds the old file (mapped; an open descriptor stands for it here).
            using var running = new FileStream(installed, FileMode.Open, FileAccess.Read);
            LabAgents.InstallShim(second, installed);

            var seen = new byte[old.Length + 1];
            int n = running.ReadAtLeast(seen, seen.Length, throwOnEndOfStream: false);

            Assert.That(seen.AsSpan(0, n).ToArray(), Is.EqualTo(old), "the running process's file (truncated and rewritten in place before)");
            Assert.That(File.ReadAllBytes(installed), Has.Length.EqualTo(1000), "the new shim is the installed one");
            Assert.That(File.GetUnixFileMode(installed) & UnixFileMode.UserExecute, Is.Not.EqualTo(UnixFileMode.None));
            Assert.That(Directory.GetFiles(Path.GetDirectoryName(installed)!), Has.Length.EqualTo(1), "no temporary file left");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
