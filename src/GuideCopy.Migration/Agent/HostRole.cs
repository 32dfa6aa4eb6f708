using GuideCopy.Migration.Journal;
using GuideCopy.Transport;

namespace GuideCopy.Migration.Agent;

/// <summary>What a host's part of one migration shares, source or destination: its settings, the migration's key, the migration's work directory.</summary>
public abstract class HostRole(AgentOptions options, byte[] secret, string migrationId, Action<string> log)
{
    protected AgentOptions Options { get; } = options;

    /// <summary>What this migration's page lanes prove and are sealed with: derived from the agents' secret and this id, so no other migration's peer passes.</summary>
    protected byte[] MigrationKey { get; } = LaneKeys.ForMigration(secret, migrationId);

    protected static LaneProtection ProtectionOf(JournalEntry? entry) =>
        entry?.ClearTextLanes == true ? LaneProtection.ClearText : LaneProtection.Sealed;

    protected string Id { get; } = migrationId;

    protected Action<string> Log { get; } = log;

    /// <summary>Sockets, the guide's console and disks of this migration; removed when it ends.</summary>
    protected string WorkDir => Path.Combine(Options.WorkDir, Id);

    protected void RemoveWorkDir()
    {
        try
        {
            Directory.Delete(WorkDir, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}
