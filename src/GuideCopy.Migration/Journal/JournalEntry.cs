using System.Text.Json.Nodes;
using GuideCopy.Transport;

namespace GuideCopy.Migration.Journal;

/// <summary>
/// What a host records about one migration it takes part in: enough for a restarted agent to
/// undo it (before the commit point) or to finish it (after), and the figures of its report.
/// </summary>
public sealed record JournalEntry
{
    public required string Id { get; init; }

    public required MigrationRole Role { get; init; }

    public required string Domain { get; init; }

    public required MigrationStage Stage { get; init; }

    public DateTimeOffset StartedAt { get; init; } = DateTimeOffset.UtcNow;

    public DateTimeOffset UpdatedAt { get; init; } = DateTimeOffset.UtcNow;

    /// <summary>Why it rolled back or failed, or what it waits for.</summary>
    public string? Note { get; init; }

    // Source.

    /// <summary>Our own hard link to the frozen RAM file (same tmpfs): it outlives libvirt's removal of its own path.</summary>
    public string? FrozenRam { get; init; }

    /// <summary>Where the page server listened; a restarted agent serves there again.</summary>
    public string? PageListen { get; init; }

    /// <summary>The page server's session id (the same after a restart, so a pager can tell it from another migration's).</summary>
    public ulong SessionId { get; init; }

    public int PageSize { get; init; } = 4096;

    public bool Persistent { get; init; }

    /// <summary>Source: keep the persistent definition when the copy is removed (migrate --keep-source-definition).</summary>
    public bool KeepDefinition { get; init; }

    /// <summary>The push cap, kept so a restarted page server honours it too (bytes/s, 0: none).</summary>
    public long BandwidthBytesPerSecond { get; init; }

    /// <summary>The bandwidth group whose budget the push shares (an evacuation), kept for a restarted page server; null: its own.</summary>
    public string? BandwidthGroup { get; init; }

    public long SuspendedAtUnixMs { get; init; }

    /// <summary>Page lanes in clear text (an explicit --insecure-lanes): a restarted agent serves or fetches the same way.</summary>
    public bool ClearTextLanes { get; init; }

    /// <summary>Source: whether the page server packs page runs (a restarted source serves the same way).</summary>
    public PageCompression Compression { get; init; }

    /// <summary>Completed and the source copy destroyed: a later agent must not look for it (the VM may be back on this host).</summary>
    public bool SourceRemoved { get; init; }

    /// <summary>The paused source QEMU was destroyed once the destination ran (its definition moves at the end): an abandon is refused.</summary>
    public bool SourceQemuStopped { get; init; }

    // Destination.

    /// <summary>The source's page server the pager fetches from.</summary>
    public string? PageServer { get; init; }

    /// <summary>
    /// The released commit: this QEMU runs by itself once it has the whole device state, so a
    /// restarted agent asks the domain whether it ran before it removes anything, and tells the
    /// source when it removed a copy that never ran (the source may have committed).
    /// </summary>
    public bool StartsOnLoad { get; init; }

    /// <summary>A copy that never ran was removed here and the source has not yet heard it (it may have committed and wait).</summary>
    public bool AbandonPending { get; init; }

    /// <summary>The source's persistent definition, defined here once every page is in (null: transient).</summary>
    public string? PersistentXml { get; init; }

    public long ResumedAtUnixMs { get; init; }

    /// <summary>The source was told every page is in (it then destroys its copy).</summary>
    public bool SourceReleased { get; init; }

    /// <summary>Source: a warm-up sent pages before the pause (a restarted agent tells the destination they are all stale).</summary>
    public bool WarmedUp { get; init; }

    /// <summary>The figures of this host's part, once it ended (kept for 'guidecopy job').</summary>
    public JsonObject? Result { get; init; }
}
