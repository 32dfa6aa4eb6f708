using System.Diagnostics;
using System.Net;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Definitions;
using GuideCopy.Transport;
using LibvirtSharp;
using LibvirtSharp.Native;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// The source host's part of one migration: pause the domain, save its device state, serve its
/// frozen RAM file to the destination; at the end destroy it, or on rollback resume it.
/// </summary>
public sealed class SourceSide(AgentOptions options, byte[] secret, string migrationId, Action<string> log)
    : HostRole(options, secret, migrationId, log), IDisposable
{
    private Connection? _conn;
    private LibvirtSharp.Domain? _domain;
    private PageServer? _server;
    private bool _persistent;
    private GuideCopy.Migration.Guide.GuideRun? _guide;
    private Task? _guideStart;

    /// <summary>Everything about the domain the controller needs before it pauses anything.</summary>
    public static SourcePrepareResult Prepare(AgentOptions o, string name)
    {
        using var conn = Connection.Open(o.LibvirtUri);
        using var dom = conn.TryLookupDomain(name)
            ?? throw new AgentException($"domain '{name}' not found on {conn.Hostname} ({o.LibvirtUri})");
        if (!dom.IsActive)
        {
            throw new AgentException($"domain '{name}' is not running: start it, or move its definition instead of migrating");
        }

        var def = DomainDefinition.Parse(dom.GetXml());
        var problems = DomainRequirements.Check(def).ToList();
        string ramPath = "";
        string fs = "";
        if (def.MemorySourceType == "file")
        {
            ramPath = FindRamFile(o, dom.Id ?? 0, name);
            if (ramPath.Length == 0)
            {
                problems.Add($"domain '{name}': its RAM file is not under {o.RamDir}: set memory_backing_dir = \"{o.RamDir}\" in /etc/libvirt/qemu.conf (a tmpfs or hugetlbfs directory) and restart the domain");
            }
            else
            {
                fs = HostFactsReader.FileSystemOf(Path.GetDirectoryName(ramPath)!).FileSystem;
                if (fs is not ("tmpfs" or "hugetlbfs"))
                {
                    problems.Add($"domain '{name}': its RAM file {ramPath} is on {fs}; userfaultfd MISSING mode needs tmpfs or hugetlbfs: point memory_backing_dir in qemu.conf at one");
                }
            }
        }

        bool persistent = dom.IsPersistent;
        return new SourcePrepareResult(
            def.Name, def.Uuid,
            DestinationXml.WithoutOurAdditions(dom.GetXml(virDomainXMLFlags.VIR_DOMAIN_XML_MIGRATABLE)),
            persistent ? dom.GetXml(virDomainXMLFlags.VIR_DOMAIN_XML_INACTIVE | virDomainXMLFlags.VIR_DOMAIN_XML_MIGRATABLE) : "",
            persistent, ramPath, def.MemoryBytes, fs, problems);
    }

    /// <summary>libvirt names file RAM &lt;memory_backing_dir&gt;/libvirt/qemu/&lt;id&gt;-&lt;name&gt;/&lt;block&gt;.</summary>
    private static string FindRamFile(AgentOptions o, uint id, string name)
    {
        string dir = Path.Combine(o.RamDir, "libvirt", "qemu", $"{id}-{name}");
        if (!Directory.Exists(dir))
        {
            return "";
        }

        var files = Directory.GetFiles(dir);
        return files.FirstOrDefault(f => Path.GetFileName(f) is "pc.ram" or "pc.ram0") ?? (files.Length == 1 ? files[0] : "");
    }

    /// <summary>
    /// Before the source pauses: start the guide's QEMU paused (its start-up then costs no
    /// downtime). A guide that cannot start is not fatal: the migration goes on without it.
    /// </summary>
    public async Task<Empty> PrepareGuideAsync(GuidePrepareRequest req, CancellationToken ct)
    {
        var prepared = Prepare(Options, req.Domain);
        var (_, free) = HostFactsReader.FileSystemOf(Options.RamDir);
        if (free < prepared.RamBytes)
        {
            throw new AgentException($"source: RAM dir {Options.RamDir} has {free >> 20} MiB free; the guide needs {prepared.RamBytes >> 20} MiB: enlarge the tmpfs or migrate with --guide off");
        }

        IncomingQemu.CreateWorkDir(WorkDir);
        _guide = new GuideCopy.Migration.Guide.GuideRun(Options, WorkDir, Id, Log);
        try
        {
            await _guide.PrepareAsync(prepared.MigratableXml, req.Domain, ct);
        }
        catch
        {
            _guide.Stop("failed to start");
            _guide = null;
            throw;
        }

        return new Empty();
    }

    /// <summary>
    /// Downtime starts here: suspend, save device state (RAM excluded), start the page server on
    /// the frozen RAM file. Any failure resumes the domain before the error goes back.
    /// </summary>
    public async Task<SwitchoverResult> SwitchoverAsync(SwitchoverRequest req, CancellationToken ct)
    {
        var prepared = Prepare(Options, req.Domain);
        if (prepared.Problems.Count > 0)
        {
            throw new AgentException(string.Join("; ", prepared.Problems));
        }

        IncomingQemu.CreateWorkDir(WorkDir);
        _persistent = prepared.Persistent;
        _conn = Connection.Open(Options.LibvirtUri);
        _domain = _conn.LookupDomain(req.Domain);
        _domain.Suspend();
        long suspendedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        Log($"{Id}: {req.Domain} suspended");
        try
        {
            var sw = Stopwatch.StartNew();
            byte[] state = await DeviceStateTransfer.SaveAsync(_domain, Path.Combine(WorkDir, "devstate.sock"),
                TimeSpan.FromSeconds(Options.DeviceStateTimeoutSeconds), ct);
            double saveMs = sw.Elapsed.TotalMilliseconds;
            _server = new PageServer(prepared.RamPath, new PageServerOptions
            {
                Secret = Secret,
                Listen = IPEndPoint.Parse(Options.PageListen),
                BandwidthBytesPerSecond = req.BandwidthBytesPerSecond,
                PushEnabled = req.Push,
                DemandRealtimePriority = Options.DemandRealtimePriority,
            })
            {
                Log = m => Log($"{Id}: page server: {m}"),
            };
            _server.Start();
            if (_guide is not null && req.Guide is { Enabled: true } control)
            {
                // The guide resumes beside the destination; its start never adds downtime.
                var guide = _guide;
                _guideStart = Task.Run(async () =>
                {
                    try
                    {
                        await guide.StartAsync(prepared.RamPath, _server, state, control, CancellationToken.None);
                    }
                    catch (Exception e)
                    {
                        guide.Stop($"failed to start: {e.Message}");
                    }
                }, CancellationToken.None);
            }
            else
            {
                _guide?.Stop("disabled");
            }

            Log($"{Id}: device state {state.Length} bytes in {saveMs:0} ms; serving {prepared.RamPath} ({_server.PageCount} pages, {_server.ZeroPages} zero)");
            return new SwitchoverResult(Convert.ToBase64String(state), state.Length, HostFactsReader.AdvertisedPageEndpoint(Options),
                _server.PageCount, _server.ZeroPages, suspendedAt, saveMs);
        }
        catch
        {
            Abort();
            throw;
        }
    }

    /// <summary>After the destination has every page: stop serving, destroy (and undefine) the source domain.</summary>
    public SourceFinishResult Finish()
    {
        _guideStart?.Wait(TimeSpan.FromSeconds(30));
        var guideStats = _guide?.Stop("migration complete");
        var c = _server?.Counters ?? default;
        _server?.Stop();
        if (_domain is not null)
        {
            _domain.Destroy();
            if (_persistent)
            {
                _domain.Undefine(virDomainUndefineFlagsValues.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM);
            }

            Log($"{Id}: source domain destroyed{(_persistent ? " and undefined" : "")}");
        }

        Dispose();
        return new SourceFinishResult(c.DemandPages, c.PushPages, c.LocalityPages, c.BackgroundPages, c.ZeroPagesSkipped, c.BytesOnWire, guideStats);
    }

    /// <summary>Rollback: stop serving and resume the untouched source (QEMU resumes from 'postmigrate').</summary>
    public void Abort()
    {
        _guideStart?.Wait(TimeSpan.FromSeconds(30));
        _guide?.Stop("rolled back");
        _server?.Stop();
        if (_domain is not null && _domain.State.State == virDomainState.VIR_DOMAIN_PAUSED)
        {
            _domain.Resume();
            Log($"{Id}: rolled back: source resumed");
        }

        Dispose();
    }

    public void Dispose()
    {
        _guide?.Dispose();
        _guide = null;
        _server?.Dispose();
        _server = null;
        _domain?.Dispose();
        _domain = null;
        _conn?.Dispose();
        _conn = null;
        RemoveWorkDir();
    }
}
