namespace GuideCopy.Lab;

/// <summary>
/// A lab host's holder: the process whose life is the host's. It keeps the host's network and
/// mount namespaces open, and everything else of the host enters them by its pid.
/// </summary>
internal static class LabHolder
{
    /// <summary>
    /// Starts the host's holder: enters the netns, unshares a private mount namespace, binds the
    /// host's private directories over libvirt's, mounts its own /dev/shm tmpfs and hugetlbfs, starts virtlogd
    /// and libvirtd, then sleeps. Its pid names the namespaces for nsenter and for teardown.
    /// </summary>
    public static int Start(LabLayout layout, string host, string? cgroup)
    {
        string dir = layout.HostDir(host);
        foreach (var target in new[] { "/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt", "/run/guidecopy" })
        {
            Directory.CreateDirectory(target);
        }

        string pidFile = Path.Combine(dir, "holder.pid");
        string script = $$"""
            set -e
            mount --bind '{{dir}}/etc' /etc/libvirt
            mount --bind '{{dir}}/run' /run/libvirt
            mount --bind '{{dir}}/lib' /var/lib/libvirt
            mount --bind '{{dir}}/cache' /var/cache/libvirt
            mount --bind '{{dir}}/log' /var/log/libvirt
            mount --bind '{{dir}}/agent' /run/guidecopy
            mount -t tmpfs -o size=12g,mode=1777 guidecopy-lab-shm /dev/shm
            mkdir -p {{LabHost.TmpfsRamDir}} {{LabHost.HugePageDir}}
            mount -t hugetlbfs -o pagesize=2M,mode=0775 guidecopy-lab-huge {{LabHost.HugePageDir}}
            virtlogd -d -p /run/libvirt/virtlogd.pid
            libvirtd -d --listen -p /run/libvirt/libvirtd.pid
            echo $$ > '{{pidFile}}'
            exec sleep infinity
            """;
        File.Delete(pidFile);
        string log = Path.Combine(dir, "holder.log");
        // The shell joins the host's cpuset first, so the holder and all it starts inherit it
        // (here: inside, 'ip netns exec' mounts a fresh /sys without the cgroup tree).
        // setsid: the holder outlives this command and ignores the terminal's signals.
        string joinCgroup = cgroup is null ? "" : $"echo $$ > '{cgroup}/cgroup.procs'; ";
        CommandRunner.Check("sh", "-c",
            $"{joinCgroup}setsid ip netns exec {layout.Netns(host)} unshare -m --propagation private -- sh -c \"$0\" >'{log}' 2>&1 </dev/null &",
            script);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            if (File.Exists(pidFile) && int.TryParse(File.ReadAllText(pidFile).Trim(), out int pid))
            {
                return pid;
            }

            Thread.Sleep(100);
        }

        throw new LabException($"host {host}: libvirtd did not start within 30 s; see {log}: {LogTail.Read(log)}");
    }
}
