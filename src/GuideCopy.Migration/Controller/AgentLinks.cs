using GuideCopy.Migration.Agent;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// The two agents as this controller reaches them: one connection to each, made again after it
/// was lost, and the lease the agents hold on this controller's life (<see cref="ControllerLease"/>).
/// </summary>
internal sealed class AgentLinks(IAgentConnector connector)
{
    private ControllerLease? _lease;

    /// <summary>The source agent's connection; null before the first call and after it was lost.</summary>
    public ISourceAgent? Source { get; private set; }

    /// <summary>The destination agent's connection; null before the first call and after it was lost.</summary>
    public IDestinationAgent? Destination { get; private set; }

    public async Task<ISourceAgent> SourceAsync(CancellationToken ct) => Source ??= await connector.ConnectSourceAsync(ct);

    public async Task<IDestinationAgent> DestinationAsync(CancellationToken ct) => Destination ??= await connector.ConnectDestinationAsync(ct);

    /// <summary>Closes a lost source connection; the next <see cref="SourceAsync"/> connects again.</summary>
    public async Task DropSourceAsync()
    {
        await CloseAsync(Source);
        Source = null;
    }

    /// <summary>Closes a lost destination connection; the next <see cref="DestinationAsync"/> connects again.</summary>
    public async Task DropDestinationAsync()
    {
        await CloseAsync(Destination);
        Destination = null;
    }

    /// <summary>From the first request that creates anything, the agents hold a lease on our life.</summary>
    public void HoldLease(string migrationId) => _lease = new ControllerLease(migrationId, connector);

    public async Task ReleaseLeaseAsync()
    {
        if (_lease is not null)
        {
            await _lease.DisposeAsync();
            _lease = null;
        }
    }

    /// <summary>The lease first, then both connections.</summary>
    public async Task CloseAllAsync()
    {
        await ReleaseLeaseAsync();
        await DropSourceAsync();
        await DropDestinationAsync();
    }

    private static ValueTask CloseAsync(object? agent) => agent is IAsyncDisposable d ? d.DisposeAsync() : ValueTask.CompletedTask;
}
