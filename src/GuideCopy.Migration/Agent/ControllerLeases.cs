using System.Collections.Concurrent;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// The controller's lease on each migration: every request naming it renews it, and a request
/// still running holds it. Before the commit point a migration needs its controller: one that
/// renewed nothing for <see cref="AgentOptions.ControllerLeaseSeconds"/> is gone, and this host
/// undoes its part (<see cref="WatchAsync"/>).
/// </summary>
internal sealed class ControllerLeases(AgentOptions options, AgentLog log)
{
    private readonly AgentLog _lines = log;
    private readonly ConcurrentDictionary<string, long> _leaseUntil = new();
    private readonly ConcurrentDictionary<string, int> _inFlight = new();

    public void Renew(string id) => _leaseUntil[id] = Environment.TickCount64 + options.ControllerLeaseSeconds * 1000L;

    /// <summary>A request naming <paramref name="id"/> starts: the lease is renewed and held until it ends.</summary>
    public void RequestStarted(string id)
    {
        Renew(id);
        _inFlight.AddOrUpdate(id, 1, (_, n) => n + 1);
    }

    /// <summary>A request naming <paramref name="id"/> ended (answered or failed): the lease runs from now.</summary>
    public void RequestEnded(string id)
    {
        _inFlight.AddOrUpdate(id, 0, (_, n) => n - 1);
        _inFlight.TryRemove(new KeyValuePair<string, int>(id, 0));
        Renew(id);
    }

    private bool LeaseExpired(string id, long now) =>
        !_inFlight.ContainsKey(id) && (!_leaseUntil.TryGetValue(id, out long until) || now > until);

    /// <summary>
    /// Before the commit point a migration needs its controller: one that renewed nothing for
    /// <see cref="AgentOptions.ControllerLeaseSeconds"/> is gone, and this host undoes its part
    /// (the source resumes, the destination copy goes). Committing and later are never touched.
    /// </summary>
    public async Task WatchAsync(MigrationSides<SourceSide> sources, MigrationSides<DestinationSide> destinations, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(1000, ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            long now = Environment.TickCount64;
            foreach (var (id, side) in sources)
            {
                if (side.Stage is MigrationStage.Preflight or MigrationStage.SourcePaused or MigrationStage.DeviceStateSaved && LeaseExpired(id, now))
                {
                    _lines.Warning($"{id}: the controller's lease ran out before the commit point: rolling back");
                    sources.Drop(id, side, "the controller went away before the commit point");
                }
                else if (side.Settled)
                {
                    sources.Remove(id);
                }
            }

            foreach (var (id, side) in destinations)
            {
                if (side.Stage is MigrationStage.Preflight or MigrationStage.DestinationPrepared or MigrationStage.DestinationLoaded && LeaseExpired(id, now))
                {
                    _lines.Warning($"{id}: the controller's lease ran out before the commit point: removing the destination copy");
                    destinations.Drop(id, side, "the controller went away before the commit point");
                }
                else if (side.Settled)
                {
                    destinations.Remove(id);
                }
            }
        }
    }
}
