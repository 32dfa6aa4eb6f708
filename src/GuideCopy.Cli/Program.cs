using System.CommandLine;
using GuideCopy.Cli.Commands;

// guidecopy: the controller CLI and (as `guidecopy agent`) the per-host agent.
// Each subcommand lives in Commands/<Name>Command.cs and exposes a static Create().
var root = new RootCommand("GuideCopy.Kvm: guide-copy live migration for libvirt-managed QEMU/KVM domains.\n" + ExitCodes.CommonHelp);
foreach (var command in new[]
{
    LabCommand.Create(),
    DemoCommand.Create(),
    AgentCommand.Create(),
    MigrateCommand.Create(),
    EvacuateCommand.Create(),
    CheckCommand.Create(),
    JobCommands.Jobs(),
    JobCommands.Job(),
    JobCommands.Abort(),
    CompareCommand.Create(),
    PagesCommand.Create(),
    BenchCommand.Create(),
    CommandTreeDocs.Man(() => root),
    CommandTreeDocs.Completion(() => root),
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

// On Ctrl-C / SIGTERM the command's token fires and it gets time to finish what it must:
// a migration before its commit point rolls back in full (System.CommandLine's default 2 s
// would cut a rollback short and leave the source paused).
return await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromMinutes(3) });
