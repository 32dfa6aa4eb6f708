using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using GuideCopy.Transport;

namespace GuideCopy.Migration.Agent;

/// <summary>What a host's part of one migration shares, source or destination: its settings, the migration's key, the migration's work directory.</summary>
public abstract class HostRole(AgentOptions options, byte[] secret, string migrationId, MigrationJournal journal, AgentLog log)
{
    /// <summary>This side's journal record; null until its first.</summary>
    public JournalEntry? Entry { get; private set; }

    /// <summary>This side's stage (Preflight until it journals anything).</summary>
    public MigrationStage Stage => Entry?.Stage ?? MigrationStage.Preflight;

    public string Domain => Entry?.Domain ?? "";

    /// <summary>Journals <paramref name="entry"/> durably, then makes it this side's record.</summary>
    protected void Record(JournalEntry entry)
    {
        var before = Entry;
        journal.Write(entry);
        Entry = entry;
        Journaled(before, entry);
    }

    /// <summary>
    /// Makes <paramref name="entry"/> this side's record without writing it: the entry a
    /// restarted agent read from the journal, or a step a restarted agent must not see.
    /// </summary>
    protected void Remember(JournalEntry entry) => Entry = entry;

    private bool _ownsWorkDir;

    protected AgentOptions Options { get; } = options;

    /// <summary>What this migration's page lanes prove and are sealed with: derived from the agents' secret and this id, so no other migration's peer passes.</summary>
    protected byte[] MigrationKey { get; } = LaneKeys.ForMigration(secret, migrationId);

    protected static LaneProtection ProtectionOf(JournalEntry? entry) =>
        entry?.ClearTextLanes == true ? LaneProtection.ClearText : LaneProtection.Sealed;

    /// <summary>The migration id: checked here too, since it names directories and files.</summary>
    protected string Id { get; } = MigrationJournal.CheckId(migrationId);

    /// <summary>Informational lines; <see cref="Lines"/> for warnings, errors and journal steps.</summary>
    protected Action<string> Log { get; } = log;

    protected AgentLog Lines { get; } = log;

    private bool _counted;

    /// <summary>
    /// After each journal write: a new stage is one log line, and the metrics count the side
    /// as active from its first record in this agent until it takes a final stage.
    /// </summary>
    private void Journaled(JournalEntry? before, JournalEntry after)
    {
        if (before?.Stage == after.Stage)
        {
            return;
        }

        Lines.Step(after);
        if (!_counted && !(before?.Stage.IsFinal() ?? false))
        {
            _counted = true;
            AgentMetrics.Started();
        }

        if (_counted && after.Stage.IsFinal())
        {
            _counted = false;
            AgentMetrics.Ended(after.Role, after.Stage);
        }
    }

    /// <summary>Sockets, the guide's console and disks of this migration; removed when it ends.</summary>
    protected MigrationWorkDir Work { get; } = new(options, migrationId);

    protected string WorkDir => Work.Path;

    private QemuUser? _qemu;

    /// <summary>QEMU's user and group (<see cref="AgentOptions.QemuUser"/>).</summary>
    protected QemuUser Qemu => _qemu ??= QemuUser.Resolve(Options);

    /// <summary>Makes the work directory; from now on this side removes it when it ends.</summary>
    protected void CreateWorkDir()
    {
        Work.Create(Qemu);
        _ownsWorkDir = true;
    }

    /// <summary>A side taken up from the journal: the directory an earlier agent made for it is this side's.</summary>
    protected void AdoptWorkDir() => _ownsWorkDir = true;

    /// <summary>
    /// Removes the work directory, only if this side made or adopted it: a side refused for a
    /// duplicate id is disposed without touching the live migration's directory.
    /// </summary>
    protected void RemoveWorkDir()
    {
        if (_ownsWorkDir)
        {
            Work.Remove(Log);
        }
    }
}
