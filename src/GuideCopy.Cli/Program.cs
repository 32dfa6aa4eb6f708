using System.CommandLine;
using GuideCopy.Cli.Commands;

// guidecopy: the controller CLI and (as `guidecopy agent`) the per-host agent.
// Each subcommand lives in Commands/<Name>Command.cs and exposes a static Create().
var root = new RootCommand("GuideCopy.Kvm: guide-copy live migration for libvirt-managed QEMU/KVM domains.");
foreach (var command in new[]
{
    LabCommand.Create(),
    DemoCommand.Create(),
    AgentCommand.Create(),
    MigrateCommand.Create(),
    CompareCommand.Create(),
    PagesCommand.Create(),
    BenchCommand.Create(),
})
{
    root.Subcommands.Add(command);
}

var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    // Usage errors exit 2, as Linux tools do (docs/cli.md); System.CommandLine would say 1.
    foreach (var error in parsed.Errors)
    {
        Console.Error.WriteLine($"guidecopy: {error.Message}");
    }

    Console.Error.WriteLine("Try 'guidecopy --help'.");
    return ExitCodes.Usage;
}

return await parsed.InvokeAsync();
