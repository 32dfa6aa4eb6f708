using GuideCopy.Lab;

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

    public static int For(GuideCopy.Migration.Report.MigrationOutcome outcome) => outcome switch
    {
        GuideCopy.Migration.Report.MigrationOutcome.Completed => Success,
        GuideCopy.Migration.Report.MigrationOutcome.Refused => Refused,
        GuideCopy.Migration.Report.MigrationOutcome.RolledBack => RolledBack,
        GuideCopy.Migration.Report.MigrationOutcome.Detached => Detached,
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
