using GuideCopy.Migration.Definitions;

namespace GuideCopy.Unit.Tests.Migration;

/// <summary>
/// The requirements preflight checks on a domain's XML, each refusal naming its fix; the lab
/// tests (RollbackAndRefusalTests) run the same check on real domains through `check`/`migrate`.
/// </summary>
public sealed class DomainRequirementsTests
{
    private static string Domain(string memoryBacking) => $"""
        <domain type='kvm'>
          <name>vm1</name>
          <memory unit='MiB'>512</memory>
          <memoryBacking>{memoryBacking}</memoryBacking>
          <os><type arch='x86_64' machine='pc'>hvm</type></os>
          <devices/>
        </domain>
        """;

    [Test]
    public void SharedFileRamMeetsTheRequirements() =>
        Assert.That(DomainRequirements.Check(DomainDefinition.Parse(Domain("<source type='file'/><access mode='shared'/>"))), Is.Empty);

    [Test]
    public void HugePagesAreRefusedBeforeAnythingPausesNamingTheFix()
    {
        var problems = DomainRequirements.Check(DomainDefinition.Parse(Domain("<hugepages/><source type='file'/><access mode='shared'/>")));
        Assert.That(problems, Has.Count.EqualTo(1));
        Assert.That(problems[0], Does.Contain("<hugepages/>").And.Contain("remove <hugepages/>").And.Contain("memory_backing_dir").And.Contain("hugetlbfs")
            .And.Contain("--mode postcopy-preempt"));
    }

    [Test]
    public void AnonymousAndPrivateRamAreRefusedNamingTheXmlToAdd()
    {
        Assert.That(DomainRequirements.Check(DomainDefinition.Parse(Domain(""))).Single(), Does.Contain("<source type='file'/><access mode='shared'/>"));
        Assert.That(DomainRequirements.Check(DomainDefinition.Parse(Domain("<source type='file'/>"))).Single(), Does.Contain("<access mode='shared'/>"));
    }
}
