using GuideCopy.Lab;
using GuideCopy.Migration.Report;

namespace GuideCopy.Cli.Commands;

/// <summary>The exit codes every command uses (documented in docs/cli.md).</summary>
internal static class ExitCodes
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int Usage = 2;
    public const int NotFound = 3;

    /// <summary>migrate: preflight refused it, nothing was paused.</summary>
    public const int Refused = 10;

    /// <summary>migrate: failed before the commit point; the source runs again.</summary>
    public const int RolledBack = 11;

    /// <summary>migrate: failed after the commit point; the VM is on the destination (maybe stalled).</summary>
    public const int FailedAfterCommit = 12;

    /// <summary>migrate: interrupted after the commit point; the agents finish it ('guidecopy job ID').</summary>
    public const int Detached = 13;

    /// <summary>The exit codes as `guidecopy migrate --help` lists them (docs/cli.md has the table).</summary>
    public const string MigrateHelp =
        "Exit codes: 0 completed (the VM runs on the destination); 1 error; 2 usage or configuration error; " +
        "10 refused by preflight (nothing paused); 11 rolled back (the VM runs on the source); " +
        "12 failed after the commit point (the VM is the destination's); 13 detached after the commit point (the agents finish; 'guidecopy job ID').";

    /// <summary>The exit codes every command shares, for `guidecopy --help`.</summary>
    public const string CommonHelp =
        "Exit codes: 0 success, 1 error, 2 usage or configuration error, 3 not found; migrate and check: 10 refused by preflight, " +
        "migrate: 11 rolled back, 12 failed after the commit point, 13 detached (see 'guidecopy migrate --help', docs/cli.md).";

    public static int For(MigrationOutcome outcome) => outcome switch
    {
        MigrationOutcome.Completed => Success,
        MigrationOutcome.Refused => Refused,
        MigrationOutcome.RolledBack => RolledBack,
        MigrationOutcome.Detached => Detached,
        _ => FailedAfterCommit,
    };
}

internal static class Cli
{
    /// <summary>Turns the errors a user can fix into one line on stderr and an exit code, not a stack trace.</summary>
    public static int Guard(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (LabException e)
        {
            Console.Error.WriteLine($"guidecopy: {e.Message}");
            return ExitCodes.Failure;
        }
    }
}
