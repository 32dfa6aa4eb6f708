using System.Diagnostics;
using System.Net;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;
using GuideCopy.Transport;
using LibvirtSharp;
using Mono.Unix.Native;

namespace GuideCopy.Migration.Agent;

// Before the pause: the frozen-RAM link, the page server and the device-state socket ready.
public sealed partial class SourceSide
{
    /// <summary>
    /// Before the pause, everything the pause would otherwise wait for: the domain checked, the
    /// libvirt handles open, the frozen-RAM link made (the same inode, so it holds the content
    /// the pause freezes), the page server listening and accepting the destination's lanes
    /// without serving a page, x-ignore-shared on and the device-state socket listening.
    /// </summary>
    public Task<SourceArmResult> ArmAsync(SourceArmRequest req, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        var prepared = SourcePreflight.Prepare(Options, req.Domain);
        if (prepared.Problems.Count > 0)
        {
            throw new AgentException(string.Join("; ", prepared.Problems));
        }

        CreateWorkDir();
        // The source QEMU connects to the agent's devstate.sock, in its own domain's directory.
        string domainDir = Work.CreateDomainDir(prepared.Uuid, Qemu);
        _conn ??= Connection.Open(Options.LibvirtUri);
        _domain ??= _conn.LookupDomain(req.Domain);
        int pageSize = PageSizeOf(prepared.RamPath);
        string frozen = FrozenRamLink.Hold(Options, Id, prepared.RamPath);
        _ramPath = prepared.RamPath;
        _pageSize = pageSize;
        // Journaled before anything of QEMU's changes: a restarted agent drops the link and the capability.
        Record((Entry ?? new JournalEntry { Id = Id, Role = MigrationRole.Source, Domain = req.Domain, Stage = MigrationStage.Preflight }) with
        {
            Stage = MigrationStage.Preflight, Note = "armed", StartedAt = Entry?.StartedAt ?? DateTimeOffset.UtcNow,
            Persistent = prepared.Persistent, PageListen = Options.PageListen, PageSize = pageSize, FrozenRam = frozen,
            BandwidthBytesPerSecond = req.BandwidthBytesPerSecond, ClearTextLanes = req.ClearTextLanes, KeepDefinition = req.KeepDefinition,
            Compression = req.Compression, BandwidthGroup = req.BandwidthGroup,
        });
        _server = StartServer(frozen, pageSize, req.BandwidthBytesPerSecond, req.Push, 0, Options.PageListen, PageServerOptions.AgentListenPorts, armed: true);
        // The port taken (several migrations at once take several): a restarted agent serves on it again.
        string listen = $"{IPEndPoint.Parse(Options.PageListen).Address}:{_server.LocalEndPoint.Port}";
        if (listen != Options.PageListen)
        {
            Record(Entry! with { PageListen = listen });
        }

        _save = DeviceStateTransfer.ArmSave(_domain, Path.Combine(domainDir, "devstate.sock"), Qemu.Gid);
        _save.WatchEvents(_conn!);
        Log($"{Id}: armed: page server on {_server.LocalEndPoint} ({_server.PageCount} pages of {pageSize} B), device-state socket listening");
        return Task.FromResult(new SourceArmResult(Options.AdvertisedPageEndpoint(_server.LocalEndPoint.Port), _server.SessionId, _server.PageCount,
            Handshake.Describe(ProtectionOf(Entry)), Math.Round(sw.Elapsed.TotalMilliseconds, 1)));
    }

    /// <summary>hugetlbfs RAM has the mount's huge page size as its page; tmpfs 4 KiB.</summary>
    private static int PageSizeOf(string ramPath)
    {
        var fs = HostFactsReader.FileSystemOf(Path.GetDirectoryName(ramPath)!).FileSystem;
        if (fs == "hugetlbfs" && Syscall.statvfs(ramPath, out var st) == 0 && st.f_bsize >= 4096)
        {
            return (int)st.f_bsize;
        }

        return 4096;
    }

    private PageServer StartServer(string frozen, int pageSize, long bandwidth, bool push, ulong sessionId, string listen, int listenPorts, bool armed = false)
    {
        var server = new PageServer(frozen, new PageServerOptions
        {
            Secret = MigrationKey,
            Protection = ProtectionOf(Entry),
            Listen = IPEndPoint.Parse(listen),
            ListenPorts = listenPorts,
            BandwidthBytesPerSecond = bandwidth,
            PushEnabled = push,
            PageSize = pageSize,
            DemandRealtimePriority = Options.DemandRealtimePriority,
            SessionId = sessionId,
            Armed = armed,
            Compression = Entry?.Compression ?? PageCompression.Auto,
            BandwidthGroup = Entry?.BandwidthGroup,
            DiscardWarmPages = !armed && (Entry?.WarmedUp ?? false),
        })
        {
            Log = m => Log($"{Id}: page server: {m}"),
            CommitRequested = DecideCommit,
            AbandonRequested = Abandoned,
            PushLaneUp = OnPushLaneUp,
            AbandonAcknowledged = () => Task.Run(() => Abort("the destination gave up its copy before it ran")),
            DoneReported = OnDestinationDone,
            DoneAcknowledged = StartCleanup,
        };
        server.Start();
        return server;
    }
}
