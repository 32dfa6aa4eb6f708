namespace GuideCopy.Cli.Bench;

/// <summary>The figures of one lane protection.</summary>
internal sealed record LaneFigures(
    string Lanes,
    double RemoteFaultP50Us, double RemoteFaultP99Us, double PagerStallP50Us, double PagerStallP99Us, long RemoteFaults,
    double BusyFaultP50Us, double BusyFaultP99Us, double BusyStallP50Us, double BusyStallP99Us, long BusyDemandFaults,
    double PushGiBps, long PushPages, double InProcessPushGiBps, double InProcessSteadyGiBps, double CpuSecondsPerGiB,
    double AllocatedBytesPerPage, long SteadyStatePages);
