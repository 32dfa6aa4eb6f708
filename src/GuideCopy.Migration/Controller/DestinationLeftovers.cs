using LibvirtSharp;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// Rollback when the destination agent is unreachable: the controller removes the destination's
/// transient QEMU itself through libvirt. Only a transient domain with the source's UUID is
/// touched — never a persistent one, never another VM.
/// </summary>
public static class DestinationLeftovers
{
    public static string Remove(string libvirtUri, string name, string uuid)
    {
        try
        {
            using var conn = Connection.Open(libvirtUri);
            using var dom = conn.TryLookupDomain(name);
            if (dom is null)
            {
                return "";
            }

            if (dom.IsPersistent || !string.Equals(dom.Uuid, uuid, StringComparison.OrdinalIgnoreCase))
            {
                return $"; left domain '{name}' on the destination alone (it is not this migration's transient copy)";
            }

            dom.Destroy();
            return "; destination copy destroyed through libvirt (its agent was unreachable)";
        }
        catch (LibvirtException e)
        {
            return $"; could not check the destination through libvirt ({e.LibvirtMessage}): look for a paused transient '{name}' there";
        }
    }
}
