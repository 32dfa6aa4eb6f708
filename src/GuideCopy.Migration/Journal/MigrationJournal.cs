using System.Text.Json;
using System.Text.RegularExpressions;
using GuideCopy.Interop;

namespace GuideCopy.Migration.Journal;

/// <summary>
/// One file per migration under the agent's journal directory (/var/lib/guidecopy/journal):
/// the last stage reached and what is needed to go on from it. Each write replaces the file
/// atomically and durably (<see cref="DurableFile"/>), so a crash at any instant leaves the
/// previous stage or the next, and an agent that starts reads back every migration it was in.
/// </summary>
public sealed partial class MigrationJournal
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };
    private readonly object _lock = new();

    public MigrationJournal(string directory)
    {
        Directory = directory;
        System.IO.Directory.CreateDirectory(directory);
        File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    public string Directory { get; }

    /// <summary>A migration id is a file name here and a directory name in the work dir: nothing else is allowed.</summary>
    public static bool IsValidId(string id) => ValidId().IsMatch(id) && id[0] != '.';

    public static string CheckId(string id) => IsValidId(id) ? id
        : throw new ArgumentException($"migration id '{(id.Length > 80 ? id[..80] + "..." : id)}' is not 1-64 of A-Z a-z 0-9 . _ - (not starting with '.')");

    public void Write(JournalEntry entry)
    {
        CheckId(entry.Id);
        byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(entry with { UpdatedAt = DateTimeOffset.UtcNow }, Json);
        lock (_lock)
        {
            DurableFile.Replace(PathOf(entry.Id), bytes);
        }
    }

    public JournalEntry? Read(string id)
    {
        string path = PathOf(CheckId(id));
        return File.Exists(path) ? Parse(path) : null;
    }

    /// <summary>Every migration this host has a record of, newest first; unreadable files are skipped (and named by <paramref name="unreadable"/>).</summary>
    public IReadOnlyList<JournalEntry> ReadAll(Action<string>? unreadable = null)
    {
        var entries = new List<JournalEntry>();
        foreach (string file in System.IO.Directory.GetFiles(Directory, "*.json"))
        {
            try
            {
                if (Parse(file) is { } e)
                {
                    entries.Add(e);
                }
            }
            catch (Exception ex) when (ex is JsonException or IOException or ArgumentException)
            {
                unreadable?.Invoke($"{file}: {ex.Message}");
            }
        }

        return entries.OrderByDescending(e => e.StartedAt).ToList();
    }

    /// <summary>Forgets ended migrations older than <paramref name="age"/> (their reports go with them).</summary>
    public void Prune(TimeSpan age)
    {
        foreach (var e in ReadAll())
        {
            if (e.Stage.IsFinal() && DateTimeOffset.UtcNow - e.UpdatedAt > age)
            {
                File.Delete(PathOf(e.Id));
            }
        }
    }

    private string PathOf(string id) => Path.Combine(Directory, id + ".json");

    private static JournalEntry? Parse(string path)
    {
        var e = JsonSerializer.Deserialize<JournalEntry>(File.ReadAllBytes(path), Json);
        return e is not null && IsValidId(e.Id) && Path.GetFileName(path) == e.Id + ".json" ? e : throw new JsonException("the entry does not match its file name");
    }

    [GeneratedRegex("^[A-Za-z0-9._-]{1,64}$")]
    private static partial Regex ValidId();
}
