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

return await root.Parse(args).InvokeAsync();
