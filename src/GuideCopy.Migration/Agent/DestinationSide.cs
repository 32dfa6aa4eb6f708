using System.Text.Json;
using GuideCopy.MemoryPlane;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using GuideCopy.Transport;
using LibvirtSharp;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// The destination host's part of one migration: start a paused QEMU with <c>-incoming defer</c>
/// and the shim, take its uffd into a <see cref="Pager"/> before QEMU touches RAM, load the
/// device state, resume it once the source has recorded the commit decision (the commit point),
/// and, once every page is in, persist the definition and tell the source to let its copy go:
/// all of it without the controller, from the journal, across restarts of this agent.
/// </summary>
public sealed partial class DestinationSide(AgentOptions options, byte[] secret, string migrationId, MigrationJournal journal, AgentLog log)
    : HostRole(options, secret, migrationId, journal, log), IMigrationSide
{
    private readonly object _lock = new();
    private readonly CancellationTokenSource _stop = new();
    private Connection? _conn;
    private LibvirtSharp.Domain? _domain;
    private ShimListener? _shim;
    private string? _domainDir;
    private ShimRegistration? _registration;
    private Pager? _pager;
    private Task<PagerCounters>? _paging;
    private CancellationTokenSource? _pagingStop;
    private Task<bool>? _decision;
    private readonly IncomingDeviceState _deviceState = new(migrationId);
    private double _resumeMs;
    private Task? _completion, _recovery, _release;
    private DestinationStatus? _final;

    private void StartPager(ShimRegistration registration, string pageServer, bool trustRamFile, bool deferPush = false)
    {
        _pager = new Pager(registration, LaneEndpoint.Parse(pageServer), MigrationKey, new PagerOptions
        {
            TrustRamFile = trustRamFile, DemandRealtimePriority = Options.DemandRealtimePriority, PushRealtimePriority = Options.PushRealtimePriority,
            Protection = ProtectionOf(Entry),
            DeferPush = deferPush,
        })
        {
            Log = m => Log($"{Id}: pager: {m}"),
        };
        _pagingStop = new CancellationTokenSource();
        _paging = _pager.RunAsync(_pagingStop.Token);
    }

    public DestinationStatus Status()
    {
        if (_final is { } final)
        {
            return final;
        }

        if (Stage.IsFinal() && _completion is null)
        {
            return Entry!.Result?.Deserialize<DestinationStatus>(ControlChannel.Json) is { } kept
                ? kept with { Done = Stage == MigrationStage.Completed, Stage = Stage.ToString(), Note = Entry.Note, ResumedAtUnixMs = Entry.ResumedAtUnixMs }
                : Empty(Stage == MigrationStage.Completed);
        }

        if (_pager is null)
        {
            // Recovering (the shim has not reconnected yet; the VM waits in its faults) or not loaded yet.
            return Empty(false);
        }

        if (_paging is { IsFaulted: true })
        {
            throw new AgentException($"pager failed: {_paging.Exception!.InnerException!.Message}");
        }

        return LiveStatus(done: false);
    }

    private DestinationStatus Empty(bool done) => new(done, Stage.ToString(), default, Entry?.Note, Entry?.ResumedAtUnixMs ?? 0);

    private DestinationStatus LiveStatus(bool done) => new(done, Stage.ToString(), _pager!.Counters, Entry?.Note, Entry?.ResumedAtUnixMs ?? 0);

    public void Dispose()
    {
        _deviceState.Dispose();
        _pagingStop?.Cancel();
        _pager?.Dispose();
        _registration?.Dispose();
        _registration = null;
        _shim?.Dispose();
        _shim = null;
        _domain?.Dispose();
        _domain = null;
        _conn?.Dispose();
        _conn = null;
        if (Stage is MigrationStage.Committing or MigrationStage.Committed)
        {
            return; // the work dir (shim socket) is the next agent's
        }

        RemoveWorkDir();
    }
}
