using GuideCopy.Migration.Host;
using LibvirtSharp;

namespace GuideCopy.Migration.Agent;

/// <summary>The destination host's preflight: asked before any migration exists there.</summary>
public static class DestinationPreflight
{
    /// <summary>Preflight on the destination: the name is free, the disks are reachable (shared storage).</summary>
    public static DestinationCheckResult Check(AgentOptions o, DestinationCheckRequest req)
    {
        var problems = new List<string>();
        using var conn = Connection.Open(o.LibvirtUri);
        using (var existing = conn.TryLookupDomain(req.Name))
        {
            if (existing is not null)
            {
                problems.Add($"destination: a domain named '{req.Name}' already exists there: remove or rename it first");
            }
        }

        foreach (var path in req.DiskPaths.Where(p => !File.Exists(p)))
        {
            problems.Add($"destination: disk {path} is not reachable there; guide-copy moves no disk data: put it on storage both hosts share");
        }

        return new DestinationCheckResult(problems);
    }
}
