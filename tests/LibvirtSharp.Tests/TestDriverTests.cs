using LibvirtSharp.Native;
using NUnit.Framework;

namespace LibvirtSharp.Tests;

/// <summary>
/// The safe layer against libvirt's in-process test driver (test:///default): no daemon, no QEMU,
/// but the same API paths, object lifetimes and error reporting.
/// </summary>
[TestFixture]
public sealed class TestDriverTests
{
    private const string Uri = "test:///default";

    private static string GuestXml(string name) => $"""
        <domain type='test'>
          <name>{name}</name>
          <memory unit='MiB'>64</memory>
          <vcpu>1</vcpu>
          <os><type arch='x86_64'>hvm</type></os>
        </domain>
        """;

    [Test]
    public void DomainLifecycleThroughTheObjectModel()
    {
        using var conn = Connection.Open(Uri);
        Assert.That(conn.Uri, Is.EqualTo(Uri));
        using var dom = conn.DefineDomain(GuestXml("lv-life"));
        Assert.That(dom.IsPersistent, Is.True);
        Assert.That(dom.State.State, Is.EqualTo(virDomainState.VIR_DOMAIN_SHUTOFF));
        dom.Start();
        Assert.That(dom.State.State, Is.EqualTo(virDomainState.VIR_DOMAIN_RUNNING));
        dom.Suspend();
        Assert.That(dom.State.State, Is.EqualTo(virDomainState.VIR_DOMAIN_PAUSED));
        dom.Resume();
        Assert.That(dom.State.State, Is.EqualTo(virDomainState.VIR_DOMAIN_RUNNING));
        Assert.That(dom.GetXml(), Does.Contain("<name>lv-life</name>"));
        Assert.That(dom.Uuid, Has.Length.EqualTo(36));
        dom.Destroy();
        Assert.That(dom.IsActive, Is.False);
        dom.Undefine();
        Assert.That(conn.TryLookupDomain("lv-life"), Is.Null);
    }

    [Test]
    public void TransientDomainVanishesOnDestroy()
    {
        using var conn = Connection.Open(Uri);
        using (var dom = conn.CreateTransient(GuestXml("lv-transient")))
        {
            Assert.That(dom.IsPersistent, Is.False);
            Assert.That(dom.IsActive, Is.True);
            dom.Destroy();
        }
        Assert.That(conn.TryLookupDomain("lv-transient"), Is.Null);
    }

    [Test]
    public void WrongUriRaisesLibvirtsMessage()
    {
        var e = Assert.Throws<LibvirtException>(() => Connection.Open("nosuchdriver:///system"));
        Assert.That(e!.LibvirtMessage, Is.Not.Empty);
        TestContext.Out.WriteLine($"{e.Code} {e.ErrorDomain}: {e.LibvirtMessage}");
    }

    [Test]
    public void UnknownDomainRaisesNoDomain()
    {
        using var conn = Connection.Open(Uri);
        var e = Assert.Throws<LibvirtException>(() => conn.LookupDomain("lv-no-such-guest"));
        Assert.That(e!.Code, Is.EqualTo(virErrorNumber.VIR_ERR_NO_DOMAIN));
        Assert.That(e.LibvirtMessage, Does.StartWith("Domain not found"));
    }

    [Test]
    public void BadXmlRaisesXmlError()
    {
        using var conn = Connection.Open(Uri);
        var e = Assert.Throws<LibvirtException>(() => conn.DefineDomain("<domain type='test'><name>broken"));
        Assert.That(e!.Code, Is.EqualTo(virErrorNumber.VIR_ERR_XML_ERROR).Or.EqualTo(virErrorNumber.VIR_ERR_XML_DETAIL));
        TestContext.Out.WriteLine($"{e.Code}: {e.LibvirtMessage}");
    }

    [Test]
    public void ListAllDomainsReturnsOwnedReferences()
    {
        using var conn = Connection.Open(Uri);
        var all = conn.ListAllDomains();
        try { Assert.That(all.Select(d => d.Name), Does.Contain("test")); }
        finally { foreach (var d in all) d.Dispose(); }
    }

    [Test]
    public void LifecycleEventsArriveOnTheEventLoop()
    {
        using var conn = Connection.Open(Uri);
        using var dom = conn.CreateTransient(GuestXml("lv-events"));
        var seen = new System.Collections.Concurrent.BlockingCollection<DomainLifecycleEvent>();
        using (DomainEvents.OnLifecycle(conn, dom, seen.Add))
        {
            dom.Suspend();
            dom.Resume();
            Assert.That(seen.TryTake(out var first, TimeSpan.FromSeconds(5)), Is.True, "no SUSPENDED event");
            Assert.That(seen.TryTake(out var second, TimeSpan.FromSeconds(5)), Is.True, "no RESUMED event");
            Assert.That((first.Event, second.Event), Is.EqualTo((virDomainEventType.VIR_DOMAIN_EVENT_SUSPENDED, virDomainEventType.VIR_DOMAIN_EVENT_RESUMED)));
            Assert.That(first.DomainName, Is.EqualTo("lv-events"));
        }
        dom.Destroy();
    }
}
