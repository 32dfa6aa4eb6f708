using System.Net;
using GuideCopy.MemoryPlane;

namespace GuideCopy.Transport;

/// <summary>
/// The two ends of the memory plane as long-running loops with line-oriented output, shared by
/// `guidecopy pages serve|receive` and the tests' helper processes. Lines start with a
/// keyword (LISTENING, REGISTERED, DONE, COUNTERS, ERROR) so scripts can wait for them.
/// </summary>
public static class PagesHost
{
    public static async Task<int> ServeAsync(string file, PageServerOptions options, TextWriter output, CancellationToken ct, int progressMs = 0)
    {
        using var server = new PageServer(file, options);
        server.Log = m => Write(output, "LOG " + m);
        server.Start();
        Write(output, $"LISTENING {server.LocalEndPoint} pages={server.PageCount} zero={server.ZeroPages}");
        try
        {
            while (!ct.IsCancellationRequested)
            {
                await Task.Delay(progressMs > 0 ? progressMs : 1000, ct).ConfigureAwait(false);
                if (progressMs > 0) Write(output, "COUNTERS " + Format(server.Counters));
            }
        }
        catch (OperationCanceledException) { }
        server.Stop();
        Write(output, "COUNTERS " + Format(server.Counters));
        return 0;
    }

    public static async Task<int> ReceiveAsync(string agentSocket, EndPoint source, byte[] secret, PagerOptions options,
        bool once, TextWriter output, CancellationToken ct)
    {
        using var listener = new ShimListener(agentSocket);
        listener.Rejected = m => Write(output, "LOG refused shim: " + m);
        Write(output, $"LISTENING {agentSocket}");
        var running = new List<Task<bool>>();
        int failures = 0;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var reg = await listener.AcceptAsync(ct).ConfigureAwait(false);
                Write(output, $"REGISTERED pid={reg.QemuPid} base=0x{reg.Base:x} length={reg.Length} page={reg.PageSize} resend={reg.IsResend} path={reg.RamPath}");
                var run = RunOne(reg, source, secret, options, output, ct);
                if (once)
                {
                    failures += await run.ConfigureAwait(false) ? 0 : 1;
                    break;
                }
                running.Add(run);
            }
        }
        catch (OperationCanceledException) { }
        foreach (var t in running) failures += await t.ConfigureAwait(false) ? 0 : 1;
        return failures == 0 ? 0 : 1;
    }

    private static async Task<bool> RunOne(ShimRegistration reg, EndPoint source, byte[] secret, PagerOptions options, TextWriter output, CancellationToken ct)
    {
        using (reg)
        using (var pager = new Pager(reg, source, secret, options))
        {
            pager.Log = m => Write(output, "LOG " + m);
            try
            {
                var s = await pager.RunAsync(ct).ConfigureAwait(false);
                Write(output, "DONE " + Format(s));
                return s.Outcome is InstallOutcome.Completed or InstallOutcome.ProcessExited;
            }
            catch (OperationCanceledException)
            {
                Write(output, "DONE " + Format(pager.Counters));
                return true;
            }
            catch (Exception e)
            {
                Write(output, $"ERROR {e.GetType().Name}: {e.Message}");
                return false;
            }
        }
    }

    public static string Format(PageServerCounters c) =>
        $"demand={c.DemandPages} push={c.PushPages} locality={c.LocalityPages} background={c.BackgroundPages} " +
        $"zero_skipped={c.ZeroPagesSkipped} bytes={c.BytesOnWire} connections={c.Connections} auth_failures={c.AuthFailures} " +
        $"protocol_errors={c.ProtocolErrors} resumes={c.Resumes}";

    public static string Format(PagerCounters s) =>
        $"outcome={s.Outcome} pages={s.PageCount} done={s.DonePages} faults={s.Faults} installed={s.InstalledPages} " +
        $"zero_resolved={s.ZeroResolvedPages} removed={s.RemovedPages} duplicates={s.DuplicatePages} " +
        $"by_demand={s.DemandPages} by_push={s.PushPages} by_locality={s.LocalityPages} by_background={s.BackgroundPages} " +
        $"stalls={s.StallCount} stall_p50_us={s.StallP50Ms * 1000:0} stall_p99_us={s.StallP99Ms * 1000:0} " +
        $"stall_max_us={s.StallMaxMs * 1000:0} stall_total_ms={s.StallTotalMs:0.0} " +
        $"bytes={s.BytesReceived} reconnects={s.Reconnects} present_at_start={s.PresentAtStart} elapsed_ms={s.ElapsedMs:0}";

    /// <summary>Parses a byte rate: plain bytes/s or with K/M/G (x1024) suffix, or Mbit (x10^6/8).</summary>
    public static long ParseRate(string text)
    {
        text = text.Trim();
        if (text.EndsWith("mbit", StringComparison.OrdinalIgnoreCase)) return (long)(double.Parse(text[..^4]) * 1_000_000 / 8);
        long mult = char.ToUpperInvariant(text[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 1 };
        return (long)(double.Parse(mult == 1 ? text : text[..^1]) * mult);
    }

    private static readonly object s_writeLock = new();
    private static void Write(TextWriter output, string line)
    {
        lock (s_writeLock)
        {
            output.WriteLine(line);
            output.Flush();
        }
    }
}
