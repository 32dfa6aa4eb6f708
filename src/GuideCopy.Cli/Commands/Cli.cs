using GuideCopy.Lab;

namespace GuideCopy.Cli.Commands;

/// <summary>The exit codes every command uses (documented in docs/cli.md).</summary>
internal static class ExitCodes
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int Usage = 2;
    public const int NotFound = 3;
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
