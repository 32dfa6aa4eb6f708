using GuideCopy.Guest;
using GuideCopy.Lab;
using GuideCopy.Migration.Baselines;
using NUnit.Framework;

namespace LibvirtSharp.Tests.Lab;

/// <summary>One baseline leg between two lab hosts, with the checks every leg must pass.</summary>
internal static class GuestMigrations
{
    /// <summary>Migrates <paramref name="guest"/>, checks it runs (persistent) only on <paramref name="to"/> and is healthy.</summary>
    public static BaselineResult Migrate(TestGuest guest, LabHost from, LabHost to, BaselineOptions options)
    {
        string name = guest.Spec.Name;
        using var source = Connection.Open(from.LibvirtUri);
        using var destination = Connection.Open(to.LibvirtUri);
        int iterations = 0;
        BaselineResult result;
        using (DomainEvents.OnMigrationIteration(source, null, e => Interlocked.Increment(ref iterations)))
            result = options.Mode.IsQmpDriven()
                ? QemuPostCopyMigration.Run(source, destination, name, to.Address, options, bandwidthBytesPerSecond: 0)
                : BaselineMigration.Run(source, destination, name, to.PeerLibvirtUri, options with { MigrationUri = $"tcp://{to.Address}" });
        TestContext.Out.WriteLine($"{guest.Spec.Workload} {from.Name}->{to.Name} {result}; {iterations} migration-iteration events");
        // libvirt raises one event per pass after the first; a run that made passes must have said so.
        // (Not for QMP-driven runs: libvirt raises it only for migrations it runs itself.)
        if (result.Iterations > 1 && !options.Mode.IsQmpDriven()) Assert.That(iterations, Is.GreaterThan(0), "no VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION event");

        using (var stillThere = source.TryLookupDomain(name))
            Assert.That(stillThere, Is.Null, "the source must not keep the domain");
        using var moved = destination.LookupDomain(name);
        Assert.That(moved.State.State, Is.EqualTo(Native.virDomainState.VIR_DOMAIN_RUNNING));
        Assert.That(moved.IsPersistent, Is.True, "the definition moves with the guest");
        AssertHealthy(guest);
        return result;
    }

    /// <summary>Three fresh heartbeats, every memory self-check OK, no GCERR line.</summary>
    public static void AssertHealthy(TestGuest guest)
    {
        var after = DateTime.UtcNow;
        using var follower = guest.Console.Follow(fromStart: true);
        IReadOnlyList<Heartbeat> beats = follower.WaitFor(3, TimeSpan.FromSeconds(60), after);
        Assert.That(beats, Has.Count.GreaterThanOrEqualTo(3), "heartbeats stopped");
        Assert.That(beats.Where(b => !b.IsOk).Select(b => b.Line), Is.Empty, "guest memory self-check failed");
        Assert.That(guest.Console.Errors(), Is.Empty);
    }
}
