using System.Text.Json.Serialization;

namespace GuideCopy.Transport;

/// <summary>A snapshot of a page server's counters.</summary>
public readonly record struct PageServerCounters(
    long DemandPages, long PushPages, long LocalityPages, long BackgroundPages,
    long ZeroPagesSkipped, long BytesOnWire, long Connections, long AuthFailures, long ProtocolErrors, long Resumes)
{
    [JsonIgnore]
    public long PagesSent => DemandPages + PushPages + LocalityPages + BackgroundPages;
}
