using GuideCopy.Migration.Baselines;
using LibvirtSharp;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// The downtime as the guest sees it, measured as for every other mode (<see cref="GuestPauseWatch"/>:
/// the source's SUSPENDED to the destination's RESUMED event), where this controller can reach
/// both libvirtds; else the agents' own clocks (suspend call to resume call) stand in.
/// </summary>
internal sealed class LibvirtPauseWatch : IDisposable
{
    private Connection? _sourceLibvirt, _destinationLibvirt;
    private LibvirtSharp.Domain? _watchedDomain;
    private GuestPauseWatch? _pauseWatch;

    private LibvirtPauseWatch()
    {
    }

    /// <summary>Null when either libvirtd or the domain cannot be reached from here.</summary>
    public static LibvirtPauseWatch? Start(MigrationPlan plan)
    {
        var watch = new LibvirtPauseWatch();
        try
        {
            watch._sourceLibvirt = Connection.Open(plan.From.LibvirtUri);
            watch._destinationLibvirt = Connection.Open(plan.To.LibvirtUri);
            watch._watchedDomain = watch._sourceLibvirt.LookupDomain(plan.Domain);
            watch._pauseWatch = new GuestPauseWatch(watch._sourceLibvirt, watch._watchedDomain, watch._destinationLibvirt, plan.Domain);
            return watch;
        }
        catch (LibvirtException)
        {
            watch.Dispose();
            return null;
        }
    }

    /// <inheritdoc cref="GuestPauseWatch.Observed"/>
    public TimeSpan? Observed() => _pauseWatch?.Observed();

    /// <inheritdoc cref="GuestPauseWatch.ObservedByQemuClocks"/>
    public TimeSpan? ObservedByQemuClocks() => _pauseWatch?.ObservedByQemuClocks();

    /// <inheritdoc cref="GuestPauseWatch.QemuStamps"/>
    public (DateTime Stop, DateTime Resume)? QemuStamps() => _pauseWatch?.QemuStamps();

    public void Dispose()
    {
        _pauseWatch?.Dispose();
        _pauseWatch = null;
        _watchedDomain?.Dispose();
        _watchedDomain = null;
        _sourceLibvirt?.Dispose();
        _sourceLibvirt = null;
        _destinationLibvirt?.Dispose();
        _destinationLibvirt = null;
    }
}
