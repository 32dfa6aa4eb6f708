using System.Text.Json.Serialization;

namespace GuideCopy.Transport;

/// <summary>
/// A snapshot of a page server's counters. DataBytes: what the data pages sent held;
/// DataWireBytes: what their data took on the wire, packed or not (<see cref="PagePacker"/>).
/// </summary>
public readonly record struct PageServerCounters(
    long DemandPages, long PushPages, long LocalityPages, long BackgroundPages,
    long ZeroPagesSkipped, long BytesOnWire, long Connections, long AuthFailures, long ProtocolErrors, long Resumes,
    long DataBytes = 0, long DataWireBytes = 0, long PackedRuns = 0)
{
    /// <summary>What the data pages held against what their data took on the wire (1: nothing packed); null before a data page went.</summary>
    [JsonIgnore]
    public double? CompressionRatio => DataWireBytes > 0 ? (double)DataBytes / DataWireBytes : null;

    [JsonIgnore]
    public long PagesSent => DemandPages + PushPages + LocalityPages + BackgroundPages;
}
