using GuideCopy.Migration.Report;
using GuideCopy.Plots;

namespace GuideCopy.Cli.Commands;

/// <summary>Which pictures `migrate --plot` and `compare --plot` write, and their file names.</summary>
internal static class Pictures
{
    public static IEnumerable<string> ForMigrate(MigrationReport report, string file)
    {
        ReportPlots.GuestWork([report], file);
        yield return file;
        if (report.Timeline?.Pages.Count > 0)
        {
            string pages = Path.Combine(Path.GetDirectoryName(file) ?? "", Path.GetFileNameWithoutExtension(file) + "-pages" + Path.GetExtension(file));
            ReportPlots.PagesByRoute(report, pages);
            yield return pages;
        }
    }

    public static IEnumerable<string> ForCompare(IReadOnlyList<MigrationReport> reports, string dir)
    {
        string work = Path.Combine(dir, "guest-work.svg");
        ReportPlots.GuestWork(reports, work);
        yield return work;
        string stalls = Path.Combine(dir, "stalls.svg");
        ReportPlots.Stalls(reports, stalls);
        yield return stalls;
        for (int i = 0; i < reports.Count; i++)
        {
            if (reports[i].Timeline?.Pages.Count > 0)
            {
                string pages = Path.Combine(dir, $"pages-{i + 1}-{reports[i].Mode}{(reports[i].Guide is null ? "-off" : "")}.svg");
                ReportPlots.PagesByRoute(reports[i], pages);
                yield return pages;
            }
        }
    }
}
