using System.Globalization;
using System.Text.RegularExpressions;

namespace GuideCopy.Guest;

/// <summary>
/// One line a test guest's workload prints each second on its serial console
/// (format in docs/guest.md): its progress and its own memory self-check.
/// <see cref="SeenAt"/> is when the host saw the line: guest clocks stop while the VM is paused,
/// so throughput around a switchover is measured in host time.
/// </summary>
public sealed partial record Heartbeat(long Seq, long GuestMs, string Workload, ulong Work, ulong Rate, string Check, string Line, DateTime SeenAt)
{
    public bool IsOk => Check == "OK";

    [GeneratedRegex(@"^GCHB seq=(?<seq>\d+) t_ms=(?<t>\d+) wl=(?<wl>\w+) work=(?<work>\d+) rate=(?<rate>\d+) check=(?<check>OK|MISMATCH)\b")]
    private static partial Regex Pattern();

    public static Heartbeat? TryParse(string line, DateTime seenAt)
    {
        // The console may carry a carriage return or kernel output glued before the line.
        int start = line.IndexOf("GCHB ", StringComparison.Ordinal);
        if (start < 0)
        {
            return null;
        }

        var m = Pattern().Match(line[start..].TrimEnd('\r'));
        if (!m.Success)
        {
            return null;
        }

        return new Heartbeat(
            long.Parse(m.Groups["seq"].ValueSpan, CultureInfo.InvariantCulture),
            long.Parse(m.Groups["t"].ValueSpan, CultureInfo.InvariantCulture),
            m.Groups["wl"].Value,
            ulong.Parse(m.Groups["work"].ValueSpan, CultureInfo.InvariantCulture),
            ulong.Parse(m.Groups["rate"].ValueSpan, CultureInfo.InvariantCulture),
            m.Groups["check"].Value,
            line[start..].TrimEnd('\r'),
            seenAt);
    }

    /// <summary>A counter of the line's <c>extra=</c> field (<c>disk_w</c>, <c>errs</c>, ...), null when absent.</summary>
    public long? Extra(string key)
    {
        int at = Line.IndexOf(" extra=", StringComparison.Ordinal);
        if (at < 0)
        {
            return null;
        }

        foreach (var field in Line[(at + 7)..].Split(' ')[0].Split(','))
        {
            int colon = field.IndexOf(':');
            if (colon > 0 && field.AsSpan(0, colon).SequenceEqual(key) &&
                long.TryParse(field.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out long value))
            {
                return value;
            }
        }

        return null;
    }
}
