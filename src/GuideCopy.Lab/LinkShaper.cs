using System.Text.RegularExpressions;

namespace GuideCopy.Lab;

/// <summary>Caps the lab link's rate with tc, on both ends of the veth pair.</summary>
internal static class LinkShaper
{
    /// <summary>Caps (or with null, uncaps) the lab link in both directions with tc tbf.</summary>
    public static void SetRate(IReadOnlyList<LabHost> hosts, string? rate)
    {
        if (rate is not null)
        {
            ValidateRate(rate);
        }

        foreach (var h in hosts)
        {
            if (rate is null)
            {
                CommandRunner.Run("ip", "netns", "exec", h.State.Netns, "tc", "qdisc", "del", "dev", h.State.Interface, "root");
            }
            else
            {
                // The link: tbf at the rate. Its burst is also the largest packet it passes whole
                // (max_size); a bigger GSO packet it segments in software (tbf_segment). TCP's
                // GSO packets reach 64 KiB of payload plus a header per segment (~68 KB), so a
                // 64 KiB burst had every pushed packet cut into 1500-byte ones: CPU on both hosts
                // that a real host's NIC (TSO/GRO) does not spend. 256 KiB passes them whole.
                CommandRunner.Check("ip", "netns", "exec", h.State.Netns, "tc", "qdisc", "replace", "dev", h.State.Interface,
                    "root", "handle", "1:", "tbf", "rate", rate, "burst", "256kb", "latency", "100ms");
                // The host's queue in front of it: pfifo_fast, Linux's default qdisc (tbf's own
                // child would be a plain byte FIFO, which no host runs). It serves packets by
                // their priority band (TOS / SO_PRIORITY) and is FIFO within a band, so a flow
                // that marks nothing (QEMU's migration streams) sees the same FIFO as before.
                CommandRunner.Check("ip", "netns", "exec", h.State.Netns, "tc", "qdisc", "replace", "dev", h.State.Interface,
                    "parent", "1:1", "handle", "10:", "pfifo_fast");
            }
        }
    }

    /// <summary>Throws unless <paramref name="rate"/> is a rate tc understands (e.g. 100mbit).</summary>
    public static void ValidateRate(string rate)
    {
        if (!Regex.IsMatch(rate, @"^\d+(\.\d+)?([kmg]?bit|[kmg]?bps)$", RegexOptions.IgnoreCase))
        {
            throw new LabException($"link rate '{rate}' is not a tc rate: use e.g. 100mbit, 12mbps or 1gbit");
        }
    }
}
