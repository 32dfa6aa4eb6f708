using LibvirtSharp.Native;

namespace LibvirtSharp;

/// <summary>
/// virDomainGetJobStats: the job type and its typed parameters by field name
/// (<see cref="TypedParamFields"/>.VIR_DOMAIN_JOB_*).
/// </summary>
public sealed record JobStats(virDomainJobType Type, IReadOnlyDictionary<string, object> Fields)
{
    public ulong? GetULong(string field) => Fields.TryGetValue(field, out object? v) ? Convert.ToUInt64(v, System.Globalization.CultureInfo.InvariantCulture) : null;

    public long? GetLong(string field) => Fields.TryGetValue(field, out object? v) ? Convert.ToInt64(v, System.Globalization.CultureInfo.InvariantCulture) : null;
}
