using System.Globalization;

namespace GuideCopy.MemoryPlane;

/// <summary>
/// The kernel's record of what a process mapped (/proc/PID/maps, proc(5)): a hello's base and
/// path must be a shared mapping of that very file in the peer, or the uffd it sent does not
/// cover the RAM it claims (a registration of some other range or file would let the pager
/// install pages into memory that is not the guest's).
/// </summary>
public static class SharedMapping
{
    /// <summary>Null if <paramref name="pid"/> has a MAP_SHARED mapping of <paramref name="path"/> starting at <paramref name="start"/>; else why not.</summary>
    public static string? Check(int pid, ulong start, string path)
    {
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/maps");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"cannot read the mappings of pid {pid}: {e.Message}";
        }

        foreach (var line in text.AsSpan().EnumerateLines())
        {
            // "7f0c00000000-7f0c20000000 rw-s 00000000 00:2f 1234    /dev/shm/.../pc.ram"
            int dash = line.IndexOf('-');
            if (dash <= 0 || !ulong.TryParse(line[..dash], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong begin) || begin != start)
            {
                continue;
            }

            var fields = line.ToString().Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 6 || fields[1].Length < 4 || fields[1][3] != 's')
            {
                return $"pid {pid} has no shared mapping at 0x{start:x}";
            }

            string mapped = fields[5].Trim();
            return mapped == path ? null : $"pid {pid} maps {mapped} at 0x{start:x}, not {path}";
        }

        return $"pid {pid} has nothing mapped at 0x{start:x}";
    }
}
