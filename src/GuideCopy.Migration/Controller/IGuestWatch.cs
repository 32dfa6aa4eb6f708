using GuideCopy.Migration.Definitions;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// Something that can watch a guest's own progress across a migration, for the report's guest
/// throughput (a lab test guest's console heartbeats). Operators' VMs have no such thing: a
/// plan without a watch reports no guest figures. Stateless: each migration starts its own watch.
/// </summary>
public interface IGuestWatch
{
    /// <summary>
    /// Starts watching the guest <paramref name="guest"/> defines and waits (briefly) for its first
    /// sign of life, which anchors the report's "during" window. Null when this guest cannot be watched.
    /// </summary>
    Task<IWatchedGuest?> StartAsync(DomainDefinition guest, CancellationToken ct);
}
