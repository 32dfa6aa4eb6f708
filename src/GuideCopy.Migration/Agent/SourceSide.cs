using GuideCopy.MemoryPlane;
using GuideCopy.Migration.Guide;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using GuideCopy.Transport;
using LibvirtSharp;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// The source host's part of one migration: pause the domain, save its device state, serve its
/// frozen RAM file to the destination; at the end destroy it, or on rollback resume it.
/// The commit decision is taken here, once, and journaled before it is told
/// (<see cref="DecideCommit"/>): the destination resumes only on "committed", and from then on
/// this side refuses to resume the source, whoever asks (the controller, a lease that ran out,
/// a restarted agent).
/// </summary>
public sealed partial class SourceSide(AgentOptions options, byte[] secret, string migrationId, MigrationJournal journal, AgentLog log)
    : HostRole(options, secret, migrationId, journal, log), IMigrationSide
{
    private readonly object _decision = new();
    private Connection? _conn;
    private LibvirtSharp.Domain? _domain;
    private PageServer? _server;
    private GuideRun? _guide;
    private Task? _guideStart;
    private Task? _cleanup;
    private SourceFinishResult? _result;
    private DeviceStateTransfer.ArmedSave? _save;
    private PendingGuide? _pendingGuide;
    private string? _ramPath;
    private int _pageSize;
    private RamWriteTracker? _tracker;

    private sealed record PendingGuide(SwitchoverRequest Request, byte[] State);
    // Set once the save's outcome is known (saved, or rolled back).
    private readonly ManualResetEventSlim _saved = new(false);

    public void Dispose()
    {
        Interlocked.Exchange(ref _tracker, null)?.Dispose();
        _save?.Dispose();
        _save = null;
        _guide?.Dispose();
        _guide = null;
        _server?.Dispose();
        _server = null;
        _domain?.Dispose();
        _domain = null;
        _conn?.Dispose();
        _conn = null;
        if (Stage is MigrationStage.Committed)
        {
            return; // the work dir is the next agent's
        }

        RemoveWorkDir();
    }
}
