using System.Text.Json;
using GuideCopy.Lab;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Controller;
using GuideCopy.Migration.Report;

namespace GuideCopy.Kvm.Tests.Migration;

/// <summary>A lab with agents for migration tests, and the checks every hop must pass.</summary>
internal static class MigrationLab
{
    public static string[] AgentLaunch => ["dotnet", CliProcess.DllPath];

    public static LabRig Up(string name)
    {
        var lab = LabRig.EnsureUp(name, out _);
        lab.StartAgents(AgentLaunch, NativeBuild.Shim);
        return lab;
    }

    /// <summary>
    /// A failed cell keeps both agents' logs beside the test results (the lab, logs and all, goes
    /// with the fixture's teardown): what each agent did is what explains a failure after a kill.
    /// </summary>
    public static void KeepAgentLogsIfFailed(LabRig lab)
    {
        var context = TestContext.CurrentContext;
        if (context.Result.Outcome.Status != NUnit.Framework.Interfaces.TestStatus.Failed)
        {
            return;
        }

        foreach (var h in lab.Hosts)
        {
            string log = Path.Combine(lab.Layout.HostDir(h.Name), "agent.log");
            if (File.Exists(log))
            {
                string kept = Path.Combine(context.WorkDirectory, $"{context.Test.Name}.{h.Name}.agent.log");
                File.Copy(log, kept, overwrite: true);
                TestContext.AddTestAttachment(kept, $"agent log of host {h.Name}");
            }
        }
    }

    /// <summary>A lab host as the in-process controller reaches it (its agent socket seen through /proc/PID/root).</summary>
    public static MigrationTarget Target(LabHost h) =>
        new($"lab:{h.Layout.Name}/{h.Name}", h.LibvirtUri, new AgentEndpoint(h.AgentSocket, null, 0), h.PeerLibvirtUri, h.Address);

    /// <summary>Runs `guidecopy migrate ... --json` and returns the exit code and the parsed report.</summary>
    public static (int ExitCode, MigrationReport? Report, string StdErr) Migrate(LabRig lab, string domain, string from, string to, params string[] extra)
    {
        var r = CliProcess.Run(["migrate", domain, "--from", $"lab:{lab.Layout.Name}/{from}", "--to", $"lab:{lab.Layout.Name}/{to}", "--json", .. extra]);
        MigrationReport? report = null;
        try
        {
            report = JsonSerializer.Deserialize<MigrationReport>(r.StdOut, MigrationReport.Json);
        }
        catch (JsonException)
        {
        }

        return (r.ExitCode, report, r.StdErr + r.StdOut);
    }

    /// <summary>
    /// Starts a transient test guest on <paramref name="host"/> whose domain XML
    /// <paramref name="edit"/> changed: a domain that does not meet the requirements (anonymous
    /// RAM, &lt;hugepages/&gt;), which TestGuest.Boot would not make.
    /// </summary>
    public static void StartEdited(LabRig lab, LabHost host, string name, int memoryMiB, Func<string, string> edit)
    {
        // The images and the console directory the XML names: staged by TestGuest.Boot otherwise,
        // so a test run alone (no guest booted before it) would find neither.
        TestGuest.StageImages(lab);
        string file = Path.Combine(lab.SharedDir, name + ".xml");
        File.WriteAllText(file, edit(TestGuest.DomainXml(lab, new TestGuestSpec(name, "memtouch", MemoryMiB: memoryMiB))));
        CommandRunner.Check("virsh", "-c", host.LibvirtUri, "create", file);
    }

    /// <summary>The edit that makes a test guest's RAM anonymous, private memory: guide-copy cannot take it over.</summary>
    public static string WithAnonymousRam(string xml) =>
        xml.Replace("<source type='file'/>", "<source type='anonymous'/>").Replace("<access mode='shared'/>", "<access mode='private'/>");

    /// <summary>What a user checks after a hop: the VM runs only on the destination, is persistent there, and nothing is left.</summary>
    public static void AssertOnlyOn(LabRig lab, string domain, LabHost host)
    {
        var other = lab.Hosts.Single(h => h != host);
        Assert.That(host.DomainNames(), Does.Contain(domain), $"{domain} should run on {host.Name}");
        Assert.That(other.DomainNames(), Does.Not.Contain(domain), $"{domain} left on {other.Name}");
        Assert.That(CommandRunner.Check("virsh", "-c", host.LibvirtUri, "dominfo", domain), Does.Match(@"Persistent:\s+yes"));
        AssertNoWorkLeft(lab);

        // The old copy's RAM file went with its QEMU.
        string ram = $"{other.RootPath}{other.RamDir}/libvirt/qemu";
        Assert.That(Directory.Exists(ram) ? Directory.GetDirectories(ram).Where(d => d.EndsWith("-" + domain)) : [], Is.Empty,
            $"RAM files of {domain} left on {other.Name}");
    }

    /// <summary>
    /// No work files and no guide's QEMU on any host, within 20 s: a migration ends once the source copy is gone, and
    /// the source agent removes its work dir when the guide's QEMU is gone too (libvirt's destroy
    /// of a TCG guide takes ~2 s here), after the command returned.
    /// </summary>
    public static void AssertNoWorkLeft(LabRig lab)
    {
        foreach (var h in lab.Hosts)
        {
            string work = $"{h.RootPath}/run/guidecopy/work";
            var deadline = DateTime.UtcNow.AddSeconds(20);
            WaitUntil(() => !Directory.Exists(work) || Directory.GetFileSystemEntries(work).Length == 0, deadline);
            Assert.That(Directory.Exists(work) ? Directory.GetFileSystemEntries(work) : [], Is.Empty, $"work files left on {h.Name}");
            // Whatever ended the migration (completion, rollback, a killed agent), no guide QEMU is left.
            WaitUntil(() => !h.DomainNames().Any(IsGuide), deadline);

            Assert.That(h.DomainNames().Where(IsGuide), Is.Empty, $"a guide's QEMU left on {h.Name}");
        }
    }

    /// <summary>Polls <paramref name="done"/> every 250 ms until it holds or <paramref name="deadline"/> (UTC) passes; the caller asserts after.</summary>
    public static void WaitUntil(Func<bool> done, DateTime deadline)
    {
        while (!done() && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(250);
        }
    }

    private static bool IsGuide(string domain) => domain.EndsWith("-guide", StringComparison.Ordinal);

    /// <summary>The guest keeps beating with its self-check OK after the hop (new heartbeats, not old ones).</summary>
    public static void AssertHeartbeatsContinue(TestGuest guest, int count = 3)
    {
        using var follower = guest.Console.Follow();
        var beats = follower.WaitFor(count, TimeSpan.FromSeconds(60));
        Assert.That(beats.Select(b => b.Check), Is.All.EqualTo("OK"), string.Join('\n', guest.Console.Errors()));
        Assert.That(beats[^1].Work, Is.GreaterThan(beats[0].Work));
    }
}
