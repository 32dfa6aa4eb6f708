using GuideCopy.Migration.Journal;
using GuideCopy.Migration.Control;
using Mono.Unix;
using Mono.Unix.Native;

namespace GuideCopy.Migration.Host;

/// <summary>
/// One migration's directory under <see cref="AgentOptions.WorkDir"/>: root-owned, QEMU's group,
/// 0750, so no other local user reaches its sockets and nobody but root adds, removes or
/// replaces an entry (unlinking a socket and binding another at its path needs write on the
/// directory). The sockets of each domain of the migration are in a directory of its own
/// beside it, <c>&lt;WorkDir&gt;/libvirt-UUID</c>: named after the domain's AppArmor profile,
/// which the installed abstraction opens to that profile only (packaging/apparmor-libvirt-qemu),
/// and not under the migration's directory because a socket path must fit sun_path's 108 bytes
/// (unix(7)) with a 64-character id. That one is 01770: QEMU creates its incoming-migration
/// socket there, and the sticky bit keeps it from removing root's (unlink in a sticky
/// directory needs the file's or the directory's owner, inode(7)). Each holds the marker too.
/// </summary>
public sealed class MigrationWorkDir(AgentOptions options, string migrationId)
{
    /// <summary>Written by <see cref="Create"/>, holding the id: <see cref="Remove"/> deletes only a directory it finds in.</summary>
    public const string MarkerName = ".guidecopy-work";

    public string Path { get; } = System.IO.Path.Combine(options.WorkDir, MigrationJournal.CheckId(migrationId));


    /// <summary>The directory for the sockets of the domain with <paramref name="uuid"/> (its AppArmor profile's name).</summary>
    public string DomainDir(string uuid) =>
        System.IO.Path.Combine(options.WorkDir, "libvirt-" + (Guid.TryParse(uuid, out var g) ? g.ToString("D") : throw new AgentException($"bad domain UUID '{uuid}'")));

    /// <summary>The agent's top directory: root:QEMU group 0750 (QEMU only traverses it).</summary>
    public static void CreateRoot(AgentOptions o, QemuUser qemu) => MakeDirectory(o.WorkDir, qemu.Gid, FilePermissions.S_IRWXU | FilePermissions.S_IRGRP | FilePermissions.S_IXGRP);

    /// <summary>Makes (or takes again) this migration's directory and marks it as the agent's.</summary>
    public void Create(QemuUser qemu)
    {
        CreateRoot(options, qemu);
        MakeDirectory(Path, qemu.Gid, FilePermissions.S_IRWXU | FilePermissions.S_IRGRP | FilePermissions.S_IXGRP);
        WriteMarker(Path);
    }

    private string Id => System.IO.Path.GetFileName(Path);

    private void WriteMarker(string dir) => File.WriteAllText(System.IO.Path.Combine(dir, MarkerName), Id + "\n");

    /// <summary>Makes the domain's directory (see the class remarks for the mode) and returns it.</summary>
    public string CreateDomainDir(string uuid, QemuUser qemu)
    {
        string dir = DomainDir(uuid);
        MakeDirectory(dir, qemu.Gid, FilePermissions.S_ISVTX | FilePermissions.S_IRWXU | FilePermissions.S_IRWXG);
        WriteMarker(dir);
        return dir;
    }

    /// <summary>
    /// Deletes the migration's directory and its domains' socket directories, each only if it is
    /// a real directory of root's (not a symbolic link) holding the marker with this id; anything
    /// else is left and logged: an agent deletes only what it made.
    /// </summary>
    public void Remove(Action<string> log)
    {
        if (Directory.Exists(options.WorkDir))
        {
            foreach (string dir in Directory.GetDirectories(options.WorkDir, "libvirt-*"))
            {
                if (MarkedAsOurs(dir) is null)
                {
                    Directory.Delete(dir, recursive: true);
                }
            }
        }

        if (Syscall.lstat(Path, out _) != 0)
        {
            return; // gone already
        }

        if (MarkedAsOurs(Path) is { } why)
        {
            log($"not removing {Path}: {why}");
            return;
        }

        Directory.Delete(Path, recursive: true);
    }

    /// <summary>Null if <paramref name="dir"/> is a directory this migration made, else why not.</summary>
    private string? MarkedAsOurs(string dir)
    {
        if (Syscall.lstat(dir, out var st) != 0 || (st.st_mode & FilePermissions.S_IFMT) != FilePermissions.S_IFDIR || st.st_uid != 0)
        {
            return "not a directory of root's";
        }

        string marker = System.IO.Path.Combine(dir, MarkerName);
        return File.Exists(marker) && File.ReadAllText(marker).Trim() == Id ? null
            : $"it has no {MarkerName} marker of migration {Id} (not made by an agent for it)";
    }

    private static void MakeDirectory(string dir, uint gid, FilePermissions mode)
    {
        Directory.CreateDirectory(dir);
        // Whatever was there: root's, QEMU's group, exactly this mode.
        if (Syscall.lstat(dir, out var st) != 0 || (st.st_mode & FilePermissions.S_IFMT) != FilePermissions.S_IFDIR)
        {
            throw new AgentException($"{dir} is not a directory");
        }

        if (Syscall.chown(dir, 0, (int)gid) != 0 || Syscall.chmod(dir, mode) != 0)
        {
            throw new AgentException($"cannot set owner root:{gid} and mode {Convert.ToString((int)mode, 8)} on {dir}: {UnixMarshal.GetErrorDescription(Stdlib.GetLastError())}");
        }
    }
}
