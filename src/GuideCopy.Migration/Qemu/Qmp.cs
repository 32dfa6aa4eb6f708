using System.Text.Json.Nodes;
using LibvirtSharp;

namespace GuideCopy.Migration.Qemu;

/// <summary>
/// QMP commands for the few QEMU steps libvirt has no API for, sent through libvirt's monitor
/// pass-through (virDomainQemuMonitorCommand; libvirt taints the domain "custom-monitor").
/// </summary>
public static class Qmp
{
    /// <summary>Runs one QMP command; a QMP error becomes an exception with QEMU's text.</summary>
    public static JsonNode Run(Domain domain, string command)
    {
        string reply = domain.QemuMonitorCommand(command);
        var node = JsonNode.Parse(reply) ?? throw new InvalidOperationException($"QEMU sent an empty reply to {command}");
        if (node["error"] is { } error)
        {
            throw new InvalidOperationException($"QEMU refused {command}: {error["desc"]?.GetValue<string>() ?? error.ToJsonString()}");
        }

        return node;
    }

    /// <summary>Runs a command and ignores a refusal (undoing a setting on a path that is already failing).</summary>
    public static bool TryRun(Domain domain, string command)
    {
        try
        {
            Run(domain, command);
            return true;
        }
        catch (Exception e) when (e is InvalidOperationException or LibvirtException)
        {
            return false;
        }
    }

    /// <summary>migrate-set-capabilities with each capability set to the given state.</summary>
    public static string SetCapabilities(bool state, params string[] capabilities)
    {
        string on = state ? "true" : "false";
        var list = capabilities.Select(c => "{\"capability\":\"" + c + "\",\"state\":" + on + "}");
        return "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":[" + string.Join(',', list) + "]}}";
    }

    /// <summary>query-migrate's "return" object.</summary>
    public static JsonNode QueryMigrate(Domain domain) =>
        Run(domain, """{"execute":"query-migrate"}""")["return"] ?? new JsonObject();
}
