using System.Text.Json;

namespace GuideCopy.Lab;

/// <summary>
/// The local two-host lab: hosts "a" and "b", each a libvirtd (own host_uuid) in its own
/// mount and network namespace, joined by a veth pair with an optional tc tbf rate cap.
/// </summary>
/// <remarks>
/// The lab's front door (attach, up, down) and its running lab's handles; the work is done by
/// <see cref="LabBringUp"/>, <see cref="LabLibvirtd"/>, <see cref="LabAgents"/>,
/// <see cref="LabNetwork"/>, <see cref="LinkShaper"/> and <see cref="LabTearDown"/>.
/// </remarks>
public sealed class LabRig
{
    private readonly LabAgents _agents;

    private LabRig(LabLayout layout, LabState state)
    {
        Layout = layout;
        State = state;
        A = new LabHost(layout, state.Hosts[0]);
        B = new LabHost(layout, state.Hosts[1]);
        _agents = new LabAgents(layout);
    }

    public LabLayout Layout { get; }

    public LabState State { get; }

    public LabHost A { get; }

    public LabHost B { get; }

    public IReadOnlyList<LabHost> Hosts => [A, B];

    public string SharedDir => Layout.SharedDir;

    /// <inheritdoc cref="LabAgents.SecretFile"/>
    public string SecretFile => _agents.SecretFile;

    /// <inheritdoc cref="LabAgents.ShimLibrary"/>
    public string ShimLibrary => _agents.ShimLibrary;

    /// <summary>The lab name from GUIDECOPY_LAB, else the default.</summary>
    public static string NameFromEnvironment() =>
        Environment.GetEnvironmentVariable("GUIDECOPY_LAB") is { Length: > 0 } n ? n : LabLayout.DefaultName;

    /// <summary>The running lab of that name, or null when it is not up.</summary>
    public static LabRig? TryAttach(string name)
    {
        var layout = new LabLayout(name);
        if (!File.Exists(layout.StateFile))
        {
            return null;
        }

        var state = JsonSerializer.Deserialize<LabState>(File.ReadAllText(layout.StateFile), LabState.Json)
            ?? throw new LabException($"lab state file {layout.StateFile} is unreadable; run 'guidecopy lab down --name {name}'");
        return new LabRig(layout, state);
    }

    /// <summary>The running lab of that name, or an error saying how to start it.</summary>
    public static LabRig Attach(string name) =>
        TryAttach(name) ?? throw new LabException($"lab '{name}' is not up; start it with 'guidecopy lab up --name {name}'");

    /// <summary>
    /// For test fixtures: the running lab of that name, or a new one. <paramref name="created"/>
    /// tells the fixture whether it owns the lab (and so must take it down).
    /// </summary>
    public static LabRig EnsureUp(string name, out bool created, string? linkRate = null, bool hugePages = false)
    {
        if (TryAttach(name) is { } lab && lab.Hosts.All(h => h.IsAlive))
        {
            if (lab.HugePages != hugePages)
            {
                throw new LabException($"lab '{name}' is up with guest RAM on {(lab.HugePages ? "hugetlbfs (2 MiB pages)" : "tmpfs (4 KiB pages)")}: " +
                                       $"take it down ('guidecopy lab down --name {name}') or use another --name");
            }

            created = false;
            return lab;
        }

        Down(name);
        created = true;
        return Up(name, linkRate, hugePages: hugePages);
    }

    /// <summary>Guest RAM on both hosts is on hugetlbfs in 2 MiB pages (memory_backing_dir), not tmpfs.</summary>
    public bool HugePages => A.State.HugePages;

    /// <summary>
    /// Brings the lab up. Fails (leaving nothing behind) if it is already up or a tool is missing.
    /// Each host gets half of the machine's CPUs (<see cref="LabCpus"/>) unless <paramref name="sharedCpus"/>.
    /// </summary>
    public static LabRig Up(string name, string? linkRate = null, Action<string>? log = null, bool sharedCpus = false, bool hugePages = false)
    {
        log ??= _ => { };
        var layout = new LabLayout(name);
        if (TryAttach(name) is { } running)
        {
            throw new LabException(
                $"lab '{name}' is already up (hosts a and b, since {running.State.StartedAt:u}); " +
                $"see 'guidecopy lab status --name {name}' or tear it down with 'guidecopy lab down --name {name}'");
        }

        RequiredTools.Check();
        if (linkRate is not null)
        {
            LinkShaper.ValidateRate(linkRate);
        }

        if (Directory.Exists($"/run/netns/{layout.Netns("a")}") || File.Exists($"/run/netns/{layout.Netns("a")}"))
        {
            throw new LabException(
                $"network namespace {layout.Netns("a")} exists but lab '{name}' has no state: a crashed run left it; " +
                $"'guidecopy lab down --name {name}' removes it");
        }

        try
        {
            return BringUp(layout, linkRate, log, sharedCpus, hugePages);
        }
        catch (Exception e)
        {
            log($"bring-up failed, removing what was made: {e.Message}");
            TearDown(layout, log);
            throw e as LabException ?? new LabException($"lab '{name}' could not start: {e.Message}", e);
        }
    }

    private static LabRig BringUp(LabLayout layout, string? linkRate, Action<string> log, bool sharedCpus, bool hugePages)
    {
        var lab = new LabRig(layout, LabBringUp.StartHosts(layout, linkRate, log, sharedCpus, hugePages));
        foreach (var host in lab.Hosts)
        {
            LabLibvirtd.WaitForLibvirt(host);
        }

        // A fresh libvirtd probes QEMU's capabilities (starts a QEMU, asks it over QMP) the first
        // time it starts a domain (seconds under TCG, docs/tuning.md), which a real host paid at boot
        // and a lab would bill to the first migration's destination start. Both hosts, side by side, now.
        LabLibvirtd.ProbeCapabilities(lab.Hosts);
        log("libvirt: QEMU capabilities probed on both hosts");

        if (linkRate is not null)
        {
            lab.SetLinkRate(linkRate);
            log($"link capped at {linkRate} (tc tbf on both ends)");
        }

        return lab;
    }

    /// <inheritdoc cref="LabAgents.StartAll"/>
    public void StartAgents(IReadOnlyList<string> agentCommand, string shimBuildPath, Action<string>? log = null) =>
        _agents.StartAll(Hosts, agentCommand, shimBuildPath, log);

    /// <summary>Starts (or, after it was stopped, restarts) one host's agent.</summary>
    public void StartAgent(LabHost h, IReadOnlyList<string> agentCommand, Action<string>? log = null) => StartAgent(h, agentCommand, [], log);

    /// <inheritdoc cref="LabAgents.Start"/>
    public void StartAgent(LabHost h, IReadOnlyList<string> agentCommand, IReadOnlyList<string> settings, Action<string>? log = null) =>
        _agents.Start(h, agentCommand, settings, log);

    /// <inheritdoc cref="LabAgents.JournalDir"/>
    public string JournalDir(LabHost h) => _agents.JournalDir(h);

    /// <inheritdoc cref="LabAgents.Pid"/>
    public static int? AgentPid(LabHost h) => LabAgents.Pid(h);

    /// <inheritdoc cref="LabNetwork.SetLink"/>
    public void SetLink(bool up) => LabNetwork.SetLink(Layout, up);

    /// <inheritdoc cref="LinkShaper.SetRate"/>
    public void SetLinkRate(string? rate) => LinkShaper.SetRate(Hosts, rate);

    /// <summary>Tears the lab down. Returns false when there was nothing to tear down.</summary>
    public static bool Down(string name, Action<string>? log = null) => TearDown(new LabLayout(name), log ?? (_ => { }));

    private static bool TearDown(LabLayout layout, Action<string> log) =>
        LabTearDown.Run(layout, TryAttachQuiet(layout.Name)?.Hosts, log);

    private static LabRig? TryAttachQuiet(string name)
    {
        try
        {
            return TryAttach(name);
        }
        catch (Exception e) when (e is LabException or JsonException)
        {
            return null;
        }
    }
}
