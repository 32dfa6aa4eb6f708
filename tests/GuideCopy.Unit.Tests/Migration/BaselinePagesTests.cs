using GuideCopy.Migration.Baselines;

namespace GuideCopy.Unit.Tests.Migration;

/// <summary>
/// QEMU's counters as page categories (the lab tests check them on real runs; these pin the
/// arithmetic on the figures of runs seen here, docs/migration.md).
/// </summary>
public sealed class BaselinePagesTests
{
    private static BaselineResult Result(BaselineMode mode, ulong totalBytes, ulong? requests, Dictionary<string, object> stats) =>
        new(mode, "vm", TimeSpan.FromSeconds(1), null, null, null, 1, 1, totalBytes, 1, requests, null, mode != BaselineMode.PreCopy, stats);

    [Test]
    public void QemuPostCopySendsEveryPageOnce()
    {
        // QEMU 10.0.2, 512 MiB kv guest, post-copy at once: 131202 pages (RAM and ROMs).
        var r = Result(BaselineMode.QemuPostCopy, 537403392, 110, new() { ["duplicate"] = 41216L, ["normal"] = 89986L, ["total"] = 537403392L });
        var pages = BaselinePages.From(r)!;
        Assert.That(pages.Total, Is.EqualTo(131202));
        Assert.That(pages.Accounted, Is.EqualTo(pages.Total));
        Assert.That(pages.Duplicate, Is.Zero);
        Assert.That(pages.Demand, Is.EqualTo(110));
        Assert.That(pages.Zero, Is.EqualTo(41216));
    }

    [Test]
    public void PreCopyResendsAreDuplicatesNotExtraPages()
    {
        // libvirt's names; 2000 dirty pages sent again in later passes.
        var r = Result(BaselineMode.PreCopy, 65536 * 4096UL, null, new()
        {
            ["memory_page_size"] = 4096UL, ["memory_constant"] = 30000UL, ["memory_normal"] = 37536UL,
        });
        var pages = BaselinePages.From(r)!;
        Assert.That(pages.Duplicate, Is.EqualTo(2000));
        Assert.That(pages.Accounted, Is.EqualTo(65536));
    }

    [Test]
    public void PagesNeverSentDoNotAddUp()
    {
        // A stream that skipped RAM (x-ignore-shared left on): the sum must show it, not hide it.
        var r = Result(BaselineMode.PreCopy, 65536 * 4096UL, null, new()
        {
            ["memory_page_size"] = 4096UL, ["memory_constant"] = 10UL, ["memory_normal"] = 100UL,
        });
        var pages = BaselinePages.From(r)!;
        Assert.That(pages.Accounted, Is.LessThan(pages.Total));
    }
}
