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
}
