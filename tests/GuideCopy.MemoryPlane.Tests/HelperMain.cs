using System.Runtime.InteropServices;
using GuideCopy.Transport;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>
/// Entry point when the tests run this assembly as a child process: the same loops as
/// `guidecopy pages serve|receive` (PagesHost), without building the CLI.
///   serve FILE ADDR:PORT SECRET_FILE [--no-push] [--bandwidth BYTES_PER_S]
///   receive AGENT_SOCKET ADDR:PORT SECRET_FILE [--once]
/// </summary>
public static class HelperMain
{
    public static int Main(string[] args)
    {
        var cts = new CancellationTokenSource();
        // SIGTERM/SIGINT end the loop normally so the final counters are printed.
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; cts.Cancel(); });
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; cts.Cancel(); });
        if (args.Length >= 4 && args[0] == "serve")
        {
            var options = new PageServerOptions
            {
                Secret = Handshake.ReadSecretFile(args[3]),
                Listen = LaneEndpoint.Parse(args[2]),
                PushEnabled = !args.Contains("--no-push"),
                BandwidthBytesPerSecond = Option(args, "--bandwidth") is { } b ? PagesHost.ParseRate(b) : 0,
            };
            return PagesHost.ServeAsync(args[1], options, Console.Out, cts.Token).GetAwaiter().GetResult();
        }
        if (args.Length >= 4 && args[0] == "receive")
        {
            return PagesHost.ReceiveAsync(args[1], LaneEndpoint.Parse(args[2]), Handshake.ReadSecretFile(args[3]),
                new PagerOptions(), args.Contains("--once"), Console.Out, cts.Token).GetAwaiter().GetResult();
        }
        Console.Error.WriteLine("usage: serve FILE ADDR:PORT SECRET_FILE [--no-push] [--bandwidth N] | receive SOCKET ADDR:PORT SECRET_FILE [--once]");
        return 2;
    }

    private static string? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
