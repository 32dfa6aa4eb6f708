using GuideCopy.Lab;
using LibvirtSharp.Native;
using NUnit.Framework;

namespace LibvirtSharp.Tests.Lab;

/// <summary>
/// The safe layer against the two real lab libvirtds (lab "lv", see <see cref="LabSetUp"/>).
/// Guests are small (128 MiB) and named lv-*.
/// </summary>
[TestFixture]
[Category("Lab")]
[NonParallelizable]
public sealed class LabLibvirtTests
{
    private static LabRig Rig => LabSetUp.Lab;

    private static string Xml(string name) => LabSetUp.GuestXml(name);

    [Test]
    public void OpensBothHosts()
    {
        using var a = Connection.Open(Rig.A.LibvirtUri);
        using var b = Connection.Open(Rig.B.LibvirtUri);
        Assert.That(a.IsAlive && b.IsAlive, Is.True);
        Assert.That(a.LibVersion, Is.GreaterThanOrEqualTo(11_000_000UL));
        TestContext.Out.WriteLine($"a: {a.Uri} ({a.Hostname}), b: {b.Uri} ({b.Hostname})");
    }

    [Test]
    public void QemuMonitorEventsArriveWithTheirDataAndOnlyTheNamedOne()
    {
        using var conn = Connection.Open(Rig.A.LibvirtUri);
        using var dom = conn.CreateTransient(Xml("lv-qmpev"));
        try
        {
            var seen = new System.Collections.Concurrent.BlockingCollection<QemuMonitorEvent>();
            using (DomainEvents.OnQemuMonitorEvent(conn, dom, "MIGRATION", seen.Add))
            {
                dom.Suspend(); // a STOP event: not the one asked for
                dom.QemuMonitorCommand("""{"execute":"migrate","arguments":{"uri":"file:/dev/null"}}""");
                var statuses = new List<string>();
                string[] final = ["completed", "failed", "cancelled"];
                while (!statuses.Any(final.Contains) && seen.TryTake(out var e, TimeSpan.FromSeconds(10)))
                {
                    Assert.That((e.Event, e.DomainName), Is.EqualTo(("MIGRATION", "lv-qmpev")));
                    statuses.Add(System.Text.Json.Nodes.JsonNode.Parse(e.Details!)!["status"]!.GetValue<string>());
                }

                TestContext.Out.WriteLine(string.Join(" ", statuses));
                // Whatever the end (a sandboxed QEMU may not write there), the events and query-migrate agree on it.
                Assert.That(statuses.First(), Is.EqualTo("setup"), "the migrate's first MIGRATION event");
                string queried = System.Text.Json.Nodes.JsonNode.Parse(dom.QemuMonitorCommand("""{"execute":"query-migrate"}"""))!["return"]!["status"]!.GetValue<string>();
                Assert.That(statuses.Last(), Is.EqualTo(queried), "the last event's status against query-migrate's");
            }
        }
        finally
        {
            dom.Destroy();
        }
    }

    [Test]
    public void DefineStartSuspendResumeDestroyUndefineWithQmp()
    {
        using var conn = Connection.Open(Rig.A.LibvirtUri);
        using var dom = conn.DefineDomain(Xml("lv-life"));
        try
        {
            Assert.That(dom.GetXml(), Does.Contain("<name>lv-life</name>"));
            dom.Start();
            Assert.That(dom.State.State, Is.EqualTo(virDomainState.VIR_DOMAIN_RUNNING));
            Assert.That(dom.QemuMonitorCommand("""{"execute":"query-status"}"""), Does.Contain("\"status\":\"running\""));

            dom.Suspend();
            Assert.That(dom.State.State, Is.EqualTo(virDomainState.VIR_DOMAIN_PAUSED));
            Assert.That(dom.QemuMonitorCommand("""{"execute":"query-status"}"""), Does.Contain("\"status\":\"paused\""));
            dom.Resume();
            Assert.That(dom.State.State, Is.EqualTo(virDomainState.VIR_DOMAIN_RUNNING));

            var job = dom.GetJobStats();
            Assert.That(job.Type, Is.EqualTo(virDomainJobType.VIR_DOMAIN_JOB_NONE));

            dom.Destroy();
            Assert.That(dom.IsActive, Is.False);
        }
        finally
        {
            if (dom.IsActive) dom.Destroy();
            dom.Undefine();
        }
        Assert.That(conn.TryLookupDomain("lv-life"), Is.Null);
    }

    [Test]
    public void QmpWithFilesPassesAnFdToQemu()
    {
        using var conn = Connection.Open(Rig.A.LibvirtUri);
        using var dom = conn.CreateTransient(Xml("lv-fds"));
        try
        {
            using var pipe = new System.IO.Pipes.AnonymousPipeServerStream(System.IO.Pipes.PipeDirection.Out);
            int fd = (int)pipe.SafePipeHandle.DangerousGetHandle();
            // getfd takes the fd that arrived with the command (SCM_RIGHTS) and names it in QEMU.
            var (reply, outFiles) = dom.QemuMonitorCommandWithFiles("""{"execute":"getfd","arguments":{"fdname":"lvpipe"}}""", [fd]);
            Assert.That(reply, Does.Contain("\"return\":{}"));
            Assert.That(outFiles, Is.Empty);
            Assert.That(dom.QemuMonitorCommand("""{"execute":"closefd","arguments":{"fdname":"lvpipe"}}"""), Does.Contain("\"return\":{}"));
        }
        finally
        {
            dom.Destroy();
        }
    }

    [Test]
    public void WrongUriRaisesLibvirtsMessage()
    {
        var e = Assert.Throws<LibvirtException>(() => Connection.Open("qemu+unix:///system?socket=/nonexistent/lv/libvirt-sock"));
        Assert.That(e!.LibvirtMessage, Does.Contain("/nonexistent/lv/libvirt-sock"));
        TestContext.Out.WriteLine($"{e.Code} {e.ErrorDomain}: {e.LibvirtMessage}");
    }

    [Test]
    public void UnknownDomainRaisesLibvirtsMessage()
    {
        using var conn = Connection.Open(Rig.B.LibvirtUri);
        var e = Assert.Throws<LibvirtException>(() => conn.LookupDomain("lv-no-such-guest"));
        Assert.That(e!.Code, Is.EqualTo(virErrorNumber.VIR_ERR_NO_DOMAIN));
        Assert.That(e.LibvirtMessage, Does.Contain("'lv-no-such-guest'"));
        TestContext.Out.WriteLine($"{e.Code} {e.ErrorDomain}: {e.LibvirtMessage}");
    }

    [Test]
    public void BadXmlRaisesLibvirtsMessage()
    {
        using var conn = Connection.Open(Rig.B.LibvirtUri);
        var e = Assert.Throws<LibvirtException>(() => conn.DefineDomain("<domain type='qemu'><name>lv-broken</name><memory>x</memory>"));
        Assert.That(e!.LibvirtMessage, Is.Not.Empty);
        TestContext.Out.WriteLine($"{e.Code} {e.ErrorDomain}: {e.LibvirtMessage}");
        var e2 = Assert.Throws<LibvirtException>(() => conn.DefineDomain("<domain type='qemu'><name>lv-broken</name></domain>"));
        TestContext.Out.WriteLine($"{e2!.Code} {e2.ErrorDomain}: {e2.LibvirtMessage}");
    }

    [Test]
    public void ThousandOpenLookupCloseCyclesKeepHandlesAndMemoryFlat()
    {
        using (var conn = Connection.Open(Rig.A.LibvirtUri))
        using (conn.DefineDomain(Xml("lv-leak"))) { }
        try
        {
            var (before, after) = LeakTests.OpenLookupCloseLoop(Rig.A.LibvirtUri, "lv-leak", 1000);
            LeakTests.AssertFlat(before, after);
        }
        finally
        {
            using var conn = Connection.Open(Rig.A.LibvirtUri);
            using var dom = conn.LookupDomain("lv-leak");
            dom.Undefine();
        }
    }
}
