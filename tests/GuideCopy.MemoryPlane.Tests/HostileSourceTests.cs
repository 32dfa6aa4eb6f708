using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using GuideCopy.Transport;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>
/// A source that knows the secret but sends malformed page frames: the pager installs nothing
/// from them, drops the lane and asks again (it never stops on its own: after the commit point
/// a stopped pager is a VM that waits for ever). The faulting side is a C program (ramtouch, holding its mapping), so no
/// managed code here ever touches uffd-registered memory.
/// </summary>
[NonParallelizable]
public class HostileSourceTests
{
    private const int Pages = 256;
    private static readonly byte[] Secret = "hostile test"u8.ToArray();

    private static async Task<(PagerCounters? stats, Exception? error)> RunAgainst(Action<FrameConnection> demandLane, long advertisedPages = Pages, int laneErrorsBeforeStop = 0, TimeSpan? stopAfter = null)
    {
        Paths.EnsureNative();
        string dst = $"/dev/shm/gcmp-hostile-{Environment.ProcessId}";
        string sock = Path.Combine(Path.GetTempPath(), $"gcmp-hostile-{Environment.ProcessId}.sock");
        File.Delete(dst);
        using var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        tcp.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        tcp.Listen(4);
        var fake = new Thread(() =>
        {
            try
            {
                while (true)
                {
                    var s = tcp.Accept();
                    new Thread(() =>
                    {
                        using var c = new FrameConnection(s, 5000);
                        try
                        {
                            var lane = Handshake.Server(c, Secret, new SessionInfo(4096, advertisedPages, 1));
                            if (lane == Lane.Demand) demandLane(c);
                            else c.Expect(FrameType.Resume);
                            while (c.ReadFrame() != FrameType.Error) { }
                        }
                        catch (IOException) { }
                    }) { IsBackground = true }.Start();
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        }) { IsBackground = true };
        fake.Start();
        try
        {
            using var listener = new ShimListener(sock);
            using var touch = ChildProcess.Start("ramtouch", Paths.RamTouch, ["run", dst, Pages.ToString(), "hold"],
                new Dictionary<string, string> { ["LD_PRELOAD"] = Paths.Shim, ["GUIDECOPY_RAM_PATH"] = dst, ["GUIDECOPY_AGENT_SOCKET"] = sock }, stdin: true);
            using var reg = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(20));
            using var pager = new Pager(reg, tcp.LocalEndPoint!, Secret, new PagerOptions { LinkTimeoutMs = 2000 });
            using var stop = new CancellationTokenSource();
            try
            {
                var run = pager.RunAsync(stop.Token);
                if (laneErrorsBeforeStop > 0)
                {
                    var deadline = DateTime.UtcNow.AddSeconds(20);
                    while (pager.LaneErrors < laneErrorsBeforeStop && DateTime.UtcNow < deadline && !run.IsCompleted) await Task.Delay(50);
                    stop.Cancel();
                }
                else if (stopAfter is { } after)
                {
                    await Task.Delay(after);
                    stop.Cancel();
                }

                var stats = await run.WaitAsync(TimeSpan.FromSeconds(20));
                return (stats, null);
            }
            catch (IOException e)
            {
                return (null, e);
            }
        }
        finally
        {
            File.Delete(dst);
        }
    }

    private static void ZeroMap(FrameConnection c, long pages)
    {
        c.Send(FrameType.ZeroMap, FrameCodec.EncodeBitmap(new PageBitmap(pages)));
    }

    private static void Pages_(FrameConnection c, ulong first, uint count, byte origin, int dataBytes)
    {
        // The codec writes what it is given: a hostile source's fields go out as they are.
        var p = new byte[Wire.PagesHeaderSize + dataBytes];
        FrameCodec.WritePagesHeader(p, (long)first, (int)count, (PageOrigin)origin);
        c.Send(FrameType.Pages, p);
    }

    [TestCase(1UL << 40, 1u, (byte)1, 4096, Description = "first page far out of range")]
    [TestCase((ulong)Pages - 1, 2u, (byte)1, 8192, Description = "run past the end")]
    [TestCase(0UL, 3u, (byte)1, 4096, Description = "count disagrees with the bytes")]
    [TestCase(0UL, 1u, (byte)9, 4096, Description = "unknown origin")]
    [TestCase(0UL, 0u, (byte)1, 0, Description = "empty run")]
    public async Task MalformedPagesAreDroppedAndTheLaneAskedAgain(ulong first, uint count, byte origin, int bytes)
    {
        // Every lane the hostile source gives lies the same way: two dropped lanes, nothing installed, then we stop it.
        var (stats, error) = await RunAgainst(c => { ZeroMap(c, Pages); Pages_(c, first, count, origin, bytes); }, laneErrorsBeforeStop: 2);
        Assert.That(error, Is.Null);
        Assert.That(stats!.Value.Outcome, Is.EqualTo(InstallOutcome.Stopped));
        Assert.That(stats.Value.InstalledPages, Is.Zero);
        Assert.That(stats.Value.Reconnects, Is.GreaterThanOrEqualTo(1), "the pager must ask for a new lane, not give up");
    }

    /// <summary>
    /// The device state sent again, end included, as the source does on every demand lane that
    /// comes up before the commit question (a lane cut during the pause): the pager keeps the lane.
    /// </summary>
    [Test]
    public async Task ARepeatedDeviceStateEndKeepsTheLane()
    {
        var length = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(length, 3);
        var (stats, error) = await RunAgainst(c =>
        {
            ZeroMap(c, Pages);
            for (int replay = 0; replay < 2; replay++)
            {
                c.Send(FrameType.DeviceState, [1, 2, 3]);
                c.Send(FrameType.DeviceStateEnd, length);
            }
        }, stopAfter: TimeSpan.FromSeconds(2));
        Assert.That(error, Is.Null);
        Assert.That(stats!.Value.LaneErrors, Is.Zero, "a repeated end must not drop the lane");
        Assert.That(stats.Value.Reconnects, Is.Zero);
    }

    /// <summary>
    /// The zero map may come after the VM runs (an armed source sends it after the freeze), so a
    /// wrong one is handled like any bad frame: not applied, the lane dropped and asked again.
    /// </summary>
    [Test]
    public async Task WrongZeroMapIsDroppedAndTheLaneAskedAgain()
    {
        var (stats, error) = await RunAgainst(c => ZeroMap(c, Pages * 2), laneErrorsBeforeStop: 2);
        Assert.That(error, Is.Null);
        Assert.That(stats!.Value.Outcome, Is.EqualTo(InstallOutcome.Stopped));
        Assert.That(stats.Value.ZeroPages + stats.Value.InstalledPages, Is.Zero, "nothing of the bad map applied");
        Assert.That(stats.Value.Reconnects, Is.GreaterThanOrEqualTo(1));
    }

    [Test]
    public async Task SourceOfAnotherSizeIsRefused()
    {
        var (_, error) = await RunAgainst(c => ZeroMap(c, Pages * 2), advertisedPages: Pages * 2);
        Assert.That(error, Is.InstanceOf<ProtocolException>());
        Assert.That(error!.Message, Does.Contain("mapping has"));
    }
}
