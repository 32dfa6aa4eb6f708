using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// The controller's lease on one migration, renewed on both agents every
/// <see cref="Period"/> on connections of its own (a long step on the main connection must
/// not starve it). Before the commit point an agent that hears no renewal for its
/// Agent:ControllerLeaseSeconds rolls its part back by itself: a killed controller leaves
/// nothing paused. Disposed once the migration is committed (or over).
/// </summary>
public sealed class ControllerLease : IAsyncDisposable
{
    public static readonly TimeSpan Period = TimeSpan.FromSeconds(2);

    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    public ControllerLease(string migrationId, IAgentConnector agents)
    {
        _loop = Task.Run(() => RenewAsync(migrationId, agents, _stop.Token));
    }

    private static async Task RenewAsync(string id, IAgentConnector agents, CancellationToken ct)
    {
        var channels = new IHostAgent?[2];
        try
        {
            while (!ct.IsCancellationRequested)
            {
                for (int i = 0; i < channels.Length; i++)
                {
                    try
                    {
                        channels[i] ??= i == 0 ? await agents.ConnectSourceAsync(ct) : await agents.ConnectDestinationAsync(ct);
                        await channels[i]!.LeaseAsync(new MigrationRequest(id), ct);
                    }
                    catch (AgentException)
                    {
                        // Unreachable for now: the main flow sees it too; try again next period.
                        if (channels[i] is IAsyncDisposable c)
                        {
                            await c.DisposeAsync();
                        }

                        channels[i] = null;
                    }
                }

                await Task.Delay(Period, ct);
            }
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            foreach (var c in channels)
            {
                if (c is IAsyncDisposable d)
                {
                    await d.DisposeAsync();
                }
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        await _loop;
        _stop.Dispose();
    }
}
