using GuideCopy.Migration.Guide;
using GuideCopy.Transport;

namespace GuideCopy.Cli.Commands;

/// <summary>
/// What one `guidecopy compare` run was asked for, read from its command line (the option
/// names, defaults and help text stay in <see cref="CompareCommand"/>).
/// </summary>
/// <param name="Variants">The modes to run, in order (<see cref="CompareCommand.Variants"/>).</param>
/// <param name="Bandwidth">The --bandwidth text as given: parsed at each migration, as before the split.</param>
/// <param name="Guide">The configuration's Guide section; each variant gets its own copy.</param>
/// <param name="Compression">--compress for guide-on and guide-off (guide-on-lz4 and guide-on-raw force theirs).</param>
internal sealed record ComparisonPlan(
    string LabName,
    string[] Variants,
    string Workload,
    int MemoryMiB,
    string? GuestArgs,
    string? Rate,
    string? Bandwidth,
    double SettleSeconds,
    double TimeoutSeconds,
    bool Json,
    string? PlotDir,
    GuideOptions Guide,
    PageCompression Compression,
    int Vcpus = 1,
    bool HugePages = false);
