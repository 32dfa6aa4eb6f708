using System.Net;
using GuideCopy.Transport;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>
/// Several migrations served from one host at once (an evacuation): each page server takes its own
/// port of the agent's range, and a full range is one clear error, never a shared port whose lanes
/// the kernel would hand to either server.
/// </summary>
public sealed class PagePortTests
{
    private string _file = "";

    [SetUp]
    public void SetUp()
    {
        _file = $"/dev/shm/gcmp-ports-{Environment.ProcessId}";
        using var f = new FileStream(_file, FileMode.Create);
        f.SetLength(16 * 4096);
    }

    [TearDown]
    public void TearDown() => File.Delete(_file);

    private PageServer Serve(int port, int ports)
    {
        var s = new PageServer(_file, new PageServerOptions { Secret = "k"u8.ToArray(), Listen = new IPEndPoint(IPAddress.Loopback, port), ListenPorts = ports });
        s.Start();
        return s;
    }

    [Test]
    public void ServersOfOneRangeTakeAPortEachAndAFullRangeSaysSo()
    {
        using var first = Serve(0, 1);
        int basePort = first.LocalEndPoint.Port;
        first.Dispose();
        using var a = Serve(basePort, 3);
        using var b = Serve(basePort, 3);
        using var c = Serve(basePort, 3);
        Assert.That(new[] { a.LocalEndPoint.Port, b.LocalEndPoint.Port, c.LocalEndPoint.Port }, Is.EqualTo(new[] { basePort, basePort + 1, basePort + 2 }));
        var full = Assert.Throws<IOException>(() => Serve(basePort, 3));
        Assert.That(full!.Message, Does.Contain($"{basePort}-{basePort + 2}").And.Contain("3 migrations"));
        var taken = Assert.Throws<IOException>(() => Serve(basePort, 1));
        Assert.That(taken!.Message, Does.Contain($"{basePort}").And.Contain("in use"));
    }
}
