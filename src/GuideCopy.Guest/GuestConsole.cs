namespace GuideCopy.Guest;

/// <summary>
/// A guest's serial console written to a file (libvirt &lt;serial type='file' append='on'&gt;).
/// Source and destination QEMU append to the same file on shared storage, so one file holds
/// the guest's whole life across hosts. A <see cref="Follow"/> stamps lines with host time.
/// </summary>
public sealed class GuestConsole(string path)
{
    public string Path { get; } = path;

    /// <summary>All heartbeats in the file, stamped with the file's last write time (no live timing).</summary>
    public IReadOnlyList<Heartbeat> ReadAll()
    {
        if (!File.Exists(Path))
        {
            return [];
        }

        var when = File.GetLastWriteTimeUtc(Path);
        var beats = new List<Heartbeat>();
        foreach (var line in ReadLinesShared())
        {
            if (Heartbeat.TryParse(line, when) is { } hb)
            {
                beats.Add(hb);
            }
        }

        return beats;
    }

    /// <summary>Lines that report a workload error or a MISMATCH (GCERR), for diagnostics.</summary>
    public IReadOnlyList<string> Errors() =>
        File.Exists(Path) ? ReadLinesShared().Where(l => l.Contains("GCERR", StringComparison.Ordinal)).ToList() : [];

    private IEnumerable<string> ReadLinesShared()
    {
        using var fs = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(fs);
        while (reader.ReadLine() is { } line)
        {
            yield return line;
        }
    }

    /// <summary>Follows the file from its current end, stamping each new heartbeat with the time it was seen.</summary>
    public HeartbeatFollower Follow(bool fromStart = false) => new(Path, fromStart);
}

/// <summary>
/// Polls a console file every 100 ms and keeps the heartbeats it sees with host timestamps,
/// for throughput before/during/after a migration.
/// </summary>
public sealed class HeartbeatFollower : IDisposable
{
    private readonly string _path;
    private readonly List<Heartbeat> _beats = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private long _offset;

    internal HeartbeatFollower(string path, bool fromStart)
    {
        _path = path;
        _offset = fromStart || !File.Exists(path) ? 0 : new FileInfo(path).Length;
        _loop = Task.Run(Loop);
    }

    public IReadOnlyList<Heartbeat> Snapshot()
    {
        lock (_beats)
        {
            return [.. _beats];
        }
    }

    /// <summary>Waits until at least <paramref name="count"/> heartbeats were seen after <paramref name="after"/>.</summary>
    public IReadOnlyList<Heartbeat> WaitFor(int count, TimeSpan timeout, DateTime? after = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var seen = Snapshot().Where(b => after is null || b.SeenAt > after).ToList();
            if (seen.Count >= count)
            {
                return seen;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"saw {seen.Count} of {count} heartbeats in {timeout.TotalSeconds:0} s on {_path}");
            }

            Thread.Sleep(100);
        }
    }

    private async Task Loop()
    {
        var pending = "";
        var buffer = new byte[64 * 1024];
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                if (File.Exists(_path))
                {
                    using var fs = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                    if (fs.Length < _offset)
                    {
                        _offset = 0; // truncated: a new guest with the same name
                    }

                    fs.Seek(_offset, SeekOrigin.Begin);
                    int n;
                    while ((n = fs.Read(buffer, 0, buffer.Length)) > 0)
                    {
                        _offset += n;
                        pending += System.Text.Encoding.UTF8.GetString(buffer, 0, n);
                    }

                    var now = DateTime.UtcNow;
                    int nl;
                    while ((nl = pending.IndexOf('\n')) >= 0)
                    {
                        var line = pending[..nl];
                        pending = pending[(nl + 1)..];
                        if (Heartbeat.TryParse(line, now) is { } hb)
                        {
                            lock (_beats)
                            {
                                _beats.Add(hb);
                            }
                        }
                    }
                }
            }
            catch (IOException)
            {
                // The file may be recreated by libvirt between polls; try again next tick.
            }

            try
            {
                await Task.Delay(100, _stop.Token);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        try
        {
            _loop.Wait(TimeSpan.FromSeconds(2));
        }
        catch (AggregateException)
        {
        }

        _stop.Dispose();
    }
}
