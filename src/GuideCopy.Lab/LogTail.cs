namespace GuideCopy.Lab;

/// <summary>The last lines of a lab daemon's log, quoted in the error when it does not start.</summary>
internal static class LogTail
{
    public static string Read(string file)
    {
        try
        {
            var lines = File.ReadAllLines(file);
            return string.Join(" | ", lines.TakeLast(5));
        }
        catch (IOException)
        {
            return "(no log)";
        }
    }
}
