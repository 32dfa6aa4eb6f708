using System.Security;
using GuideCopy.Guest;

namespace GuideCopy.Lab;

/// <summary>What test guest to boot: a workload from native/guest (docs/guest.md) and its size.</summary>
/// <param name="WorkMiB">The workload's memory (gc.mib); 0 lets the guest pick its default.</param>
/// <param name="ExtraCmdline">More kernel command-line keys (gc.ws=..., ...).</param>
/// <param name="DiskImage">A qcow2 image (on the lab's shared storage) attached as an IDE disk; null: no disk.</param>
/// <param name="Vcpus">vCPUs; the workload runs one thread per vCPU (gc.threads defaults to the online CPUs).</param>
public sealed record TestGuestSpec(string Name, string Workload = "memtouch", int MemoryMiB = 512, int WorkMiB = 0, string? ExtraCmdline = null,
    string? DiskImage = null, int Vcpus = 1)
{
    public static readonly string[] Workloads = ["memtouch", "sort", "kv", "textsort", "textzip"];

    public string KernelCmdline =>
        $"console=ttyS0 panic=-1 gc.workload={Workload}" + (WorkMiB > 0 ? $" gc.mib={WorkMiB}" : "") +
        (ExtraCmdline is null ? "" : " " + ExtraCmdline);
}

/// <summary>
/// A test guest on a lab host: a Debian kernel and the workload initramfs, booted directly,
/// RAM a shared file on the host's tmpfs or hugetlbfs (the backing guide-copy needs), console to a file
/// in the shared directory so its heartbeats can be read wherever it runs.
/// </summary>
public sealed class TestGuest
{
    private TestGuest(TestGuestSpec spec, LabHost host, string consolePath)
    {
        Spec = spec;
        Host = host;
        ConsolePath = consolePath;
        Console = new GuestConsole(consolePath);
    }

    public TestGuestSpec Spec { get; }

    public LabHost Host { get; }

    public string ConsolePath { get; }

    public GuestConsole Console { get; }

    /// <summary>Where the native build puts the guest kernel and initramfs.</summary>
    public static string ImagesBuildDir => NativeBuild.GuestImages;

    public static string ConsolePathFor(LabRig lab, string domain) => Path.Combine(lab.SharedDir, "console", domain + ".log");

    /// <summary>The libvirt domain XML for a test guest in this lab.</summary>
    public static string DomainXml(LabRig lab, TestGuestSpec spec)
    {
        string images = Path.Combine(lab.SharedDir, "images");
        string E(string s) => SecurityElement.Escape(s);
        // As a host that starts every QEMU with the shim would (docs/memory-plane.md, "Tracking
        // writes while the source runs"): a guide-copy warm-up can then track this VM's writes.
        // The lab's agents copy the shim there; before they ran, the guest starts without it.
        string shim = Path.Combine(lab.SharedDir, "lib", "libguidecopy-shim.so");
        string tracking = File.Exists(shim) ? $"""

              <qemu:commandline>
                <qemu:env name='LD_PRELOAD' value='{E(shim)}'/>
                <qemu:env name='GUIDECOPY_TRACK_WRITES' value='1'/>
              </qemu:commandline>
            """ : "";
        return $$"""
            <domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
              <name>{{E(spec.Name)}}</name>
              <memory unit='MiB'>{{spec.MemoryMiB}}</memory>
              <vcpu>{{spec.Vcpus}}</vcpu>
              <memoryBacking>
                <source type='file'/>
                <access mode='shared'/>
              </memoryBacking>
              <os>
                <type arch='x86_64' machine='pc'>hvm</type>
                <kernel>{{E(Path.Combine(images, "vmlinuz"))}}</kernel>
                <initrd>{{E(Path.Combine(images, "initrd.gz"))}}</initrd>
                <cmdline>{{E(spec.KernelCmdline)}}</cmdline>
              </os>
              <features><acpi/></features>
              <clock offset='utc'/>
              <on_poweroff>destroy</on_poweroff>
              <on_reboot>destroy</on_reboot>
              <on_crash>destroy</on_crash>
              <devices>
                <emulator>/usr/bin/qemu-system-x86_64</emulator>
                <controller type='usb' model='none'/>{{(spec.DiskImage is null ? "" : $"""

                <disk type='file' device='disk'>
                  <driver name='qemu' type='qcow2'/>
                  <source file='{E(spec.DiskImage)}'/>
                  <target dev='hda' bus='ide'/>
                </disk>
            """)}}
                <serial type='file'>
                  <source path='{{E(ConsolePathFor(lab, spec.Name))}}' append='on'/>
                  <target port='0'/>
                </serial>
                <memballoon model='none'/>
              </devices>{{tracking}}
            </domain>
            """;
    }

    /// <summary>Copies the guest images to the shared directory where both hosts' QEMU can read them.</summary>
    public static void StageImages(LabRig lab)
    {
        string dst = Path.Combine(lab.SharedDir, "images");
        Directory.CreateDirectory(dst);
        Directory.CreateDirectory(Path.Combine(lab.SharedDir, "console"));
        File.SetUnixFileMode(Path.Combine(lab.SharedDir, "console"), (UnixFileMode)0b111_111_111 | UnixFileMode.StickyBit);
        foreach (var f in new[] { "vmlinuz", "initrd.gz" })
        {
            string src = Path.Combine(ImagesBuildDir, f);
            if (!File.Exists(src))
            {
                throw new LabException($"guest image {src} is missing: build it with 'make -C native' (or run scripts/setup)");
            }

            string target = Path.Combine(dst, f);
            if (!File.Exists(target) || File.GetLastWriteTimeUtc(target) < File.GetLastWriteTimeUtc(src))
            {
                File.Copy(src, target, overwrite: true);
                File.SetUnixFileMode(target, (UnixFileMode)0b110_100_100);
            }
        }
    }

    /// <summary>Defines and starts the guest on <paramref name="host"/>.</summary>
    public static TestGuest Boot(LabRig lab, LabHost host, TestGuestSpec spec)
    {
        if (!TestGuestSpec.Workloads.Contains(spec.Workload))
        {
            throw new LabException($"unknown workload '{spec.Workload}': use one of {string.Join(", ", TestGuestSpec.Workloads)}");
        }

        StageImages(lab);
        if (host.State.HugePages)
        {
            // The guest, its guide and its destination copy each take the whole RAM in huge pages.
            LabHugePages.EnsureFree(lab.Layout, 3L * spec.MemoryMiB * (1 << 20) / LabHugePages.PageBytes);
        }

        string console = ConsolePathFor(lab, spec.Name);
        File.Delete(console);
        string xmlFile = Path.Combine(lab.Layout.StateDir, spec.Name + ".xml");
        File.WriteAllText(xmlFile, DomainXml(lab, spec));
        try
        {
            CommandRunner.Check("virsh", "-c", host.LibvirtUri, "define", xmlFile);
            var r = CommandRunner.Run("virsh", "-c", host.LibvirtUri, "start", spec.Name);
            if (!r.Succeeded)
            {
                CommandRunner.Run("virsh", "-c", host.LibvirtUri, "undefine", spec.Name);
                throw new LabException($"guest {spec.Name} did not start on host {host.Name}: {r.StdErr.Trim()}");
            }
        }
        finally
        {
            File.Delete(xmlFile);
        }

        return new TestGuest(spec, host, console);
    }

    /// <summary>Destroys and undefines the guest, wherever in the lab it runs now.</summary>
    public static void Remove(LabRig lab, string name)
    {
        foreach (var h in lab.Hosts)
        {
            CommandRunner.Run("virsh", "-c", h.LibvirtUri, "destroy", name);
            CommandRunner.Run("virsh", "-c", h.LibvirtUri, "undefine", name);
        }
    }

    /// <summary>Waits for heartbeats from the start of the console file.</summary>
    public IReadOnlyList<Heartbeat> WaitForHeartbeats(int count, TimeSpan timeout)
    {
        using var follower = Console.Follow(fromStart: true);
        return follower.WaitFor(count, timeout);
    }
}
