using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Definitions;
using GuideCopy.Migration.Host;

namespace GuideCopy.Migration.Guide;

/// <summary>The guide's disks: each of the VM's disks stands in as a blank image of its size, never the VM's own.</summary>
internal sealed class GuideDisks(string workDir, QemuUser qemu)
{
    /// <summary>
    /// A blank qcow2 of the same size as <paramref name="disk"/>, in the work directory. QEMU's
    /// image locking lets no QEMU read an image (not even as a backing file) that another QEMU
    /// writes, and the destination writes the VM's disk from its resume on: a guide backed by that
    /// disk would fail to start, or, resumed first, make the destination's 'cont' fail with
    /// "Failed to get write lock", which rolls the migration back (docs/tuning.md, "The guide's
    /// blank disk"). So the guide reads zeros from its disk and writes nowhere that matters. A guest
    /// that reads its disk while the guide runs makes the guide diverge; its demand misses then stop
    /// it (the control loop). GuideTests' disk test holds it to that with a guest that does.
    /// </summary>
    public string BlankFor(DiskInfo disk)
    {
        string overlay = Path.Combine(workDir, $"guide-{disk.Target}.qcow2");
        // -U: read the header of an image another QEMU holds; only its virtual size is needed.
        string info = RunQemuImg("info", "-U", "--output=json", disk.Source!);
        long size = JsonDocument.Parse(info).RootElement.GetProperty("virtual-size").GetInt64();
        RunQemuImg("create", "-q", "-f", "qcow2", overlay, size.ToString(CultureInfo.InvariantCulture));
        // QEMU's group may write it (libvirt's DAC driver hands disks to QEMU's user as well); nobody else.
        if (Mono.Unix.Native.Syscall.chown(overlay, -1, (int)qemu.Gid) != 0)
        {
            throw new AgentException($"chown {overlay} to group {qemu.Gid} failed");
        }

        File.SetUnixFileMode(overlay, (UnixFileMode)0b110_110_000);
        return overlay;
    }

    private static string RunQemuImg(params string[] args)
    {
        var psi = new ProcessStartInfo("qemu-img") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return p.ExitCode == 0 ? output : throw new AgentException($"qemu-img {args[0]} for the guide's disk failed: {err.Trim()}");
    }
}
