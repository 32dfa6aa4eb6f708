namespace GuideCopy.Migration.Guide;

/// <summary>What the guide did, for the report: every guide counter, by name, filled in once when the guide stops (<see cref="GuideRun"/>).</summary>
public sealed record GuideStats
{
    /// <summary>Pages the guide touched and logged for the push.</summary>
    public long PagesLogged { get; init; }
    /// <summary>Destination demand faults while the guide ran.</summary>
    public long DemandDuringGuide { get; init; }
    /// <summary>Demand pages the guide had not touched a window later (<see cref="MissWindows"/>).</summary>
    public long Misses { get; init; }
    /// <summary>Destination demand faults on pages the guide had already touched (the push had not delivered them).</summary>
    public long LatePushes { get; init; }
    public double RuntimeSeconds { get; init; }
    /// <summary>CPU time of the guide's QEMU (utime + stime).</summary>
    public double CpuSeconds { get; init; }
    public string StopReason { get; init; } = "";
    /// <summary>How long the guide's QEMU took to start (paused), ms.</summary>
    public double StartMs { get; init; }
    /// <summary>Guide-log entries the push jumped past (<see cref="GuideOptions.LeadPages"/>).</summary>
    public long PushSkipped { get; init; }
    /// <summary>Late pushes whose page the push had already sent when the fault came (it was on the wire).</summary>
    public long LateInFlight { get; init; }
    public double? LateLeadP50Ms { get; init; }
    /// <summary>Demand faults on entries the push had not taken yet.</summary>
    public long Overtaken { get; init; }
}
