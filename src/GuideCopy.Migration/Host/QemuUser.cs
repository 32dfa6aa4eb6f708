using GuideCopy.Migration.Control;
using Mono.Unix;

namespace GuideCopy.Migration.Host;

/// <summary>
/// The user and group libvirt runs QEMU as (qemu.conf <c>user</c>/<c>group</c>; Debian's
/// build default libvirt-qemu:libvirt-qemu): the only non-root identity that may reach a migration's
/// sockets (the group) or hand the agent a uffd (the uid).
/// </summary>
public sealed record QemuUser(string Name, uint Uid, uint Gid)
{
    public static QemuUser Resolve(AgentOptions o)
    {
        try
        {
            var user = new UnixUserInfo(o.QemuUser);
            var group = new UnixGroupInfo(o.QemuGroup);
            return new QemuUser(o.QemuUser, (uint)user.UserId, (uint)group.GroupId);
        }
        catch (ArgumentException e)
        {
            throw new AgentException($"QEMU's user {o.QemuUser}:{o.QemuGroup} (Agent:QemuUser, Agent:QemuGroup) does not exist here: " +
                                     $"set them to qemu.conf's 'user' and 'group' ({e.Message})");
        }
    }

    public override string ToString() => $"{Name} (uid {Uid}, gid {Gid})";
}
