using System.Net;
using GuideCopy.Transport;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>A real PageServer on loopback over a RAM file in /dev/shm, for tests that play the destination's side of the wire.</summary>
public sealed class LoopbackPageServer : IDisposable
{
    public LoopbackPageServer(string file, byte[] secret)
    {
        File = file;
        Server = new PageServer(file, new PageServerOptions { Secret = secret, Listen = new IPEndPoint(IPAddress.Loopback, 0), LinkTimeoutMs = 2000 });
        Server.Start();
    }

    public string File { get; }

    public PageServer Server { get; }

    public void Dispose()
    {
        Server.Dispose();
        System.IO.File.Delete(File);
    }
}
