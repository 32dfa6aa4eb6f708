using GuideCopy.Lab;

namespace GuideCopy.Unit.Tests.Lab;

/// <summary>
/// The CPU mask the lab writes to rps_cpus, in the kernel's bitmap format (LabRigTests checks the
/// steering on a real lab; these cover the CPU numbers this 2-core machine cannot have).
/// </summary>
public class LabCpusTests
{
    [TestCase("0", "1")]
    [TestCase("1", "2")]
    [TestCase("0-3", "f")]
    [TestCase("31", "80000000")]
    [TestCase("32", "1,00000000")]
    [TestCase("0,33", "2,00000001")]
    [TestCase("64-65", "3,00000000,00000000")]
    [TestCase("", "0")]
    public void MaskIsInTheKernelsBitmapFormat(string cpus, string mask)
    {
        Assert.That(LabCpus.CpuMask(LabCpus.ParseList(cpus)), Is.EqualTo(mask));
    }

    [Test]
    public void TheKernelReadsTheMaskBack()
    {
        // /proc/self/status prints the same format for the CPUs this process may run on.
        var allowed = LabCpus.ParseList(File.ReadAllLines("/proc/self/status").Single(l => l.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal)).Split(':')[1]);
        string printed = File.ReadAllLines("/proc/self/status").Single(l => l.StartsWith("Cpus_allowed:", StringComparison.Ordinal)).Split(':')[1].Trim();
        // The kernel pads to nr_cpu_ids words; compare without the leading zero words.
        Assert.That(printed.TrimStart('0', ','), Is.EqualTo(LabCpus.CpuMask(allowed).TrimStart('0', ',')));
    }
}
