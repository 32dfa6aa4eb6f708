using System.Diagnostics;
using LibvirtSharp;
using LibvirtSharp.Native;

namespace GuideCopy.Migration.Baselines;

/// <summary>
/// The pause the guest really sees: source SUSPENDED -> destination RESUMED, as this process
/// receives libvirt's lifecycle events (libvirt's and QEMU's own downtime figures are missing or
/// unreliable for post-copy, docs/FACTS.md). Both handlers run on the one event-loop thread.
/// </summary>
public sealed class GuestPauseWatch : IDisposable
{
    private readonly IDisposable _sourceEvents, _destinationEvents;
    private readonly IDisposable? _sourceStops, _destinationResumes;
    private long _sourcePaused, _destinationResumed;
    private long _sourceStopEmitted, _destinationResumeEmitted;

    public GuestPauseWatch(Connection source, LibvirtSharp.Domain domain, Connection destination, string domainName)
    {
        _sourceEvents = DomainEvents.OnLifecycle(source, domain, e =>
        {
            if (e.Event == virDomainEventType.VIR_DOMAIN_EVENT_SUSPENDED) Interlocked.CompareExchange(ref _sourcePaused, e.Timestamp, 0);
        });
        _destinationEvents = DomainEvents.OnLifecycle(destination, null, e =>
        {
            if (e.DomainName == domainName && e.Event == virDomainEventType.VIR_DOMAIN_EVENT_RESUMED)
                Interlocked.CompareExchange(ref _destinationResumed, e.Timestamp, 0);
        });
        // The same two moments by QEMU's own stamps (its STOP and RESUME events): libvirt's
        // delivery, which trails them by 0-17 ms on a busy host, left out.
        try
        {
            _sourceStops = DomainEvents.OnQemuMonitorEvent(source, domain, "STOP",
                e => Interlocked.CompareExchange(ref _sourceStopEmitted, e.EmittedAt.UtcTicks, 0));
            _destinationResumes = DomainEvents.OnQemuMonitorEvent(destination, null, "RESUME", e =>
            {
                if (e.DomainName == domainName) Interlocked.CompareExchange(ref _destinationResumeEmitted, e.EmittedAt.UtcTicks, 0);
            });
        }
        catch (LibvirtException)
        {
            // A libvirt without QEMU monitor events (or a non-QEMU driver): only the lifecycle figure.
        }
    }

    /// <summary>
    /// The pause by QEMU's own clocks: the destination QEMU's RESUME event's stamp less the source
    /// QEMU's STOP event's, after <see cref="Observed"/>. Both stamps are their hosts' wall clocks,
    /// so this holds where those agree (the lab: one clock; NTP'd hosts: within their offset).
    /// Null if either event was missed or they are out of order.
    /// </summary>
    public TimeSpan? ObservedByQemuClocks()
    {
        long stop = Interlocked.Read(ref _sourceStopEmitted), resume = Interlocked.Read(ref _destinationResumeEmitted);
        return stop != 0 && resume > stop ? TimeSpan.FromTicks(resume - stop) : null;
    }

    /// <summary>
    /// QEMU's own stamps of the pause's two ends (UTC): the source's STOP and the destination's
    /// RESUME; null until both came, in order.
    /// </summary>
    public (DateTime Stop, DateTime Resume)? QemuStamps()
    {
        long stop = Interlocked.Read(ref _sourceStopEmitted), resume = Interlocked.Read(ref _destinationResumeEmitted);
        return stop != 0 && resume > stop ? (new DateTime(stop, DateTimeKind.Utc), new DateTime(resume, DateTimeKind.Utc)) : null;
    }

    /// <summary>
    /// The pause, after the migration returned; waits up to 2 s for the destination's RESUMED
    /// event, which may trail the API's return by a few milliseconds. Null if an event was missed.
    /// </summary>
    public TimeSpan? Observed()
    {
        var deadline = Stopwatch.StartNew();
        while (Interlocked.Read(ref _destinationResumed) == 0 && deadline.Elapsed < TimeSpan.FromSeconds(2)) Thread.Sleep(5);
        long paused = Interlocked.Read(ref _sourcePaused), resumed = Interlocked.Read(ref _destinationResumed);
        return paused != 0 && resumed > paused ? Stopwatch.GetElapsedTime(paused, resumed) : null;
    }

    public void Dispose()
    {
        _sourceEvents.Dispose();
        _destinationEvents.Dispose();
        _sourceStops?.Dispose();
        _destinationResumes?.Dispose();
    }
}
