using System.CommandLine;

namespace GuideCopy.Cli.Commands;

internal static class LabCommand
{
    public static Command Create()
    {
        var command = new Command("lab", "The local two-host lab: two libvirtds in their own mount and network namespaces.");
        return command;
    }
}
