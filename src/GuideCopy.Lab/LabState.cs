using System.Text.Json;
using System.Text.Json.Serialization;

namespace GuideCopy.Lab;

/// <summary>What a running lab is made of, kept in /run so status and down find it again.</summary>
public sealed record LabState(
    string Name,
    int SubnetIndex,
    string? LinkRate,
    DateTimeOffset StartedAt,
    IReadOnlyList<LabHostState> Hosts)
{
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };
}

/// <summary>
/// One lab host: its namespaces (held open by <see cref="HolderPid"/>), identity, and the CPUs
/// its processes run on (<see cref="LabCpus"/>; null when the hosts share the machine's CPUs).
/// </summary>
public sealed record LabHostState(
    string Name,
    string Netns,
    string Interface,
    string Address,
    string HostUuid,
    int HolderPid,
    string? Cpus = null,
    string? Cgroup = null,
    bool HugePages = false);
