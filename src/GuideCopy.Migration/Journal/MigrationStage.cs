using System.Text.Json.Serialization;

namespace GuideCopy.Migration.Journal;

/// <summary>
/// Where one migration stands on one host, in the order a migration passes through them
/// (docs/migration.md, "Stages and the journal"). Every agent writes the stage to its journal
/// before the step that makes it irreversible, so a restarted agent knows what to undo or finish.
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<MigrationStage>))]
public enum MigrationStage
{
    /// <summary>Checks only; nothing exists anywhere yet.</summary>
    Preflight,

    /// <summary>Destination: its QEMU runs paused in -incoming with the shim; it never ran the guest.</summary>
    DestinationPrepared,

    /// <summary>Source: about to suspend (journaled first, so a restarted agent resumes it).</summary>
    SourcePaused,

    /// <summary>Source: the device state is saved and the frozen RAM is served.</summary>
    DeviceStateSaved,

    /// <summary>Destination: the device state is loaded; the VM could resume here.</summary>
    DestinationLoaded,

    /// <summary>Destination: it asked the source for the commit decision and resumes if it is "committed".</summary>
    Committing,

    /// <summary>
    /// The commit point. Source: the decision is taken and recorded, it never resumes again.
    /// Destination: the VM runs here; from now on nothing may destroy it.
    /// </summary>
    Committed,

    /// <summary>Every page is in (destination) or served (source); definitions moved, the source copy gone.</summary>
    Completed,

    /// <summary>Undone before the commit point: the source runs, the destination copy is gone.</summary>
    RolledBack,

    /// <summary>Ended without completing and without a rollback (reported; needs an operator).</summary>
    Failed,
}

/// <summary>Which part of a migration a host plays.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<MigrationRole>))]
public enum MigrationRole
{
    Source,
    Destination,
}

public static class MigrationStages
{
    /// <summary>On the far side of the commit point: the source must never resume.</summary>
    public static bool IsCommitted(this MigrationStage s) => s is MigrationStage.Committed or MigrationStage.Completed;

    /// <summary>Nothing more will happen to this migration on this host.</summary>
    public static bool IsFinal(this MigrationStage s) => s is MigrationStage.Completed or MigrationStage.RolledBack or MigrationStage.Failed;
}
