using GuideCopy.Lab;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>
/// The memory plane with real parts on the lab (docs/lab.md, own lab "mp"): the source agent
/// serves a patterned RAM file from host a; on host b a C program (native/tools/ramtouch) maps
/// a fresh tmpfs file through the shim and the destination agent fills it across the veth
/// link. Every byte is checked by the C program. Then link loss and an agent restart mid-run.
/// </summary>
[TestFixture, NonParallelizable, Category("Lab")]
public class LabTransferTests
{
    private const string LabName = "mp";
    private LabRig _lab = null!;
    private bool _created;
    private string _secret = "", _wrongSecret = "";
    private readonly List<ChildProcess> _children = new();
    private readonly List<(LabHost host, string path)> _files = new();
    private int _port = 7700;

    [OneTimeSetUp]
    public void SetUpLab()
    {
        Paths.EnsureNative();
        _lab = LabRig.EnsureUp(LabName, out _created);
        _secret = Path.Combine(_lab.SharedDir, "gcmp-secret");
        _wrongSecret = Path.Combine(_lab.SharedDir, "gcmp-wrong-secret");
        File.WriteAllText(_secret, "memory-plane test secret\n");
        File.WriteAllText(_wrongSecret, "not the secret\n");
    }

    [OneTimeTearDown]
    public void TearDownLab()
    {
        foreach (var c in _children) c.Dispose();
        foreach (var (host, path) in _files) host.Run("rm", "-f", path);
        File.Delete(_secret);
        File.Delete(_wrongSecret);
        if (_created) LabRig.Down(LabName);
    }

    [TearDown]
    public void StopChildren()
    {
        foreach (var c in _children) c.Dispose();
        _children.Clear();
    }

    private ChildProcess Track(ChildProcess c) { _children.Add(c); return c; }

    private string SourceFile(int pages)
    {
        string path = $"/dev/shm/gcmp-src-{pages}";
        if (!_files.Contains((_lab.A, path)))
        {
            _lab.A.Check(Paths.RamTouch, "gen", path, pages.ToString());
            _files.Add((_lab.A, path));
        }
        return path;
    }

    private string DestFile(string tag)
    {
        string path = $"/dev/shm/gcmp-dst-{tag}";
        _lab.B.Run("rm", "-f", path);
        _files.Add((_lab.B, path));
        return path;
    }

    private (ChildProcess serve, string endpoint) Serve(int pages, params string[] extra)
    {
        string endpoint = $"{_lab.A.Address}:{_port++}";
        var serve = Track(new ChildProcess("serve@a", _lab.A.Start(Paths.Dotnet, [Paths.Helper, "serve", SourceFile(pages), endpoint, _secret, .. extra])));
        serve.WaitFor("LISTENING", TimeSpan.FromSeconds(30));
        return (serve, endpoint);
    }

    private ChildProcess Receive(string socket, string endpoint, string? secret = null) =>
        Track(new ChildProcess("receive@b", _lab.B.Start(Paths.Dotnet, [Paths.Helper, "receive", socket, endpoint, secret ?? _secret])));

    private ChildProcess Touch(string dest, string socket, int pages, string mode, int delayUs = 0) =>
        Track(new ChildProcess("ramtouch@b", _lab.B.Start(Paths.RamTouch, ["run", dest, pages.ToString(), mode, "12345", delayUs.ToString()],
            new Dictionary<string, string>
            {
                ["LD_PRELOAD"] = Paths.Shim,
                ["GUIDECOPY_RAM_PATH"] = dest,
                ["GUIDECOPY_AGENT_SOCKET"] = socket,
            })));

    private static void AssertAllBytesRight(ChildProcess touch, TimeSpan timeout)
    {
        var result = touch.WaitFor("RESULT", timeout);
        var f = ChildProcess.Fields(result);
        Assert.That(f["ok"], Is.EqualTo("1"), result);
        Assert.That(f["bad_words"], Is.EqualTo("0"), result);
        Assert.That(touch.WaitForExit(TimeSpan.FromSeconds(10)), Is.Zero);
    }

    [TestCase("seq")]
    [TestCase("random")]
    [TestCase("mixed")]
    [TestCase("remove")]
    public void EveryByteArrivesAcrossTheLink(string mode)
    {
        const int pages = 8192; // 32 MiB
        var (_, endpoint) = Serve(pages);
        string socket = $"/run/guidecopy/gcmp-{mode}.sock";
        var receive = Receive(socket, endpoint);
        receive.WaitFor("LISTENING", TimeSpan.FromSeconds(30));
        var touch = Touch(DestFile(mode), socket, pages, mode);
        AssertAllBytesRight(touch, TimeSpan.FromSeconds(120));
        var done = ChildProcess.Fields(receive.WaitFor("DONE", TimeSpan.FromSeconds(60)));
        TestContext.Out.WriteLine(string.Join(' ', done.Select(kv => $"{kv.Key}={kv.Value}")));
        Assert.That(done["outcome"], Is.AnyOf("Completed", "ProcessExited"));
    }

    [Test]
    public void AllPagesPushedAheadWithoutFaults()
    {
        const int pages = 8192;
        var (_, endpoint) = Serve(pages);
        string socket = "/run/guidecopy/gcmp-hold.sock";
        var receive = Receive(socket, endpoint);
        receive.WaitFor("LISTENING", TimeSpan.FromSeconds(30));
        var touch = Track(new ChildProcess("ramtouch@b", StartHold(DestFile("hold"), socket, pages)));
        var done = ChildProcess.Fields(receive.WaitFor("DONE", TimeSpan.FromSeconds(120)));
        Assert.That(done["outcome"], Is.EqualTo("Completed"));
        Assert.That(done["faults"], Is.EqualTo("0"));
        // The uffd is released: the program now reads plain shared memory.
        touch.Process.StandardInput.WriteLine("go");
        touch.Process.StandardInput.Flush();
        AssertAllBytesRight(touch, TimeSpan.FromSeconds(60));
    }

    private System.Diagnostics.Process StartHold(string dest, string socket, int pages)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("nsenter") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in _lab.B.EnterArgs(Paths.RamTouch, "run", dest, pages.ToString(), "hold")) psi.ArgumentList.Add(a);
        psi.Environment["LD_PRELOAD"] = Paths.Shim;
        psi.Environment["GUIDECOPY_RAM_PATH"] = dest;
        psi.Environment["GUIDECOPY_AGENT_SOCKET"] = socket;
        return System.Diagnostics.Process.Start(psi)!;
    }

    [Test]
    public void LinkDownForThreeSecondsStallsThenFinishes()
    {
        const int pages = 16384; // 64 MiB, ~55 MiB non-zero, pushed at 8 MiB/s: ~7 s
        var (serve, endpoint) = Serve(pages, "--bandwidth", "8M");
        string socket = "/run/guidecopy/gcmp-link.sock";
        var receive = Receive(socket, endpoint);
        receive.WaitFor("LISTENING", TimeSpan.FromSeconds(30));
        var touch = Touch(DestFile("link"), socket, pages, "random", delayUs: 300);
        touch.WaitFor("MAPPED", TimeSpan.FromSeconds(30));
        Thread.Sleep(1500);
        string iface = _lab.B.State.Interface;
        try
        {
            _lab.B.Check("ip", "link", "set", iface, "down");
            TestContext.Out.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} link {iface} down");
            Thread.Sleep(3000);
        }
        finally
        {
            _lab.B.Check("ip", "link", "set", iface, "up");
            TestContext.Out.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} link {iface} up");
        }
        AssertAllBytesRight(touch, TimeSpan.FromSeconds(120));
        var result = ChildProcess.Fields(touch.Output.Split('\n').First(l => l.StartsWith("RESULT")));
        Assert.That(double.Parse(result["max_us"]), Is.GreaterThan(1_000_000), "a fault should have stalled across the outage");
        var done = ChildProcess.Fields(receive.WaitFor("DONE", TimeSpan.FromSeconds(60)));
        Assert.That(done["outcome"], Is.AnyOf("Completed", "ProcessExited"));
        serve.Stop();
        TestContext.Out.WriteLine(serve.Output);
    }

    [Test]
    public void AgentKilledAndRestartedStallsThenFinishes()
    {
        const int pages = 16384;
        var (_, endpoint) = Serve(pages, "--bandwidth", "8M");
        string socket = "/run/guidecopy/gcmp-restart.sock";
        var first = Receive(socket, endpoint);
        first.WaitFor("LISTENING", TimeSpan.FromSeconds(30));
        var touch = Touch(DestFile("restart"), socket, pages, "mixed", delayUs: 300);
        first.WaitFor("REGISTERED", TimeSpan.FromSeconds(30));
        Thread.Sleep(1500);
        first.Kill(); // SIGKILL: no cleanup, the shim keeps its uffd copy and QEMU-side faults stall
        TestContext.Out.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} agent killed");
        Thread.Sleep(1500);
        var second = Receive(socket, endpoint);
        var reg = second.WaitFor("REGISTERED", TimeSpan.FromSeconds(30));
        Assert.That(reg, Does.Contain("resend=True"));
        AssertAllBytesRight(touch, TimeSpan.FromSeconds(120));
        var done = ChildProcess.Fields(second.WaitFor("DONE", TimeSpan.FromSeconds(60)));
        Assert.That(done["outcome"], Is.AnyOf("Completed", "ProcessExited"));
        Assert.That(long.Parse(done["present_at_start"]), Is.GreaterThan(0), "the restarted agent resumes from the pages already in the file");
        Assert.That(touch.Output, Does.Contain("handed").And.Contain("again"));
    }

    [Test]
    public void WrongSecretGetsNoPage()
    {
        const int pages = 1024;
        var (serve, endpoint) = Serve(pages);
        string socket = "/run/guidecopy/gcmp-wrong.sock";
        var receive = Receive(socket, endpoint, _wrongSecret);
        receive.WaitFor("LISTENING", TimeSpan.FromSeconds(30));
        var touch = Touch(DestFile("wrong"), socket, pages, "seq");
        var error = receive.WaitFor("ERROR", TimeSpan.FromSeconds(30));
        Assert.That(error, Does.Contain("AuthenticationFailed"));
        touch.Kill(); // its faults can never be served
        serve.Stop();
        var counters = ChildProcess.Fields(serve.WaitFor("COUNTERS", TimeSpan.FromSeconds(10)));
        Assert.That(counters["auth_failures"], Is.Not.EqualTo("0"));
        Assert.That(counters["demand"], Is.EqualTo("0"));
        Assert.That(counters["background"], Is.EqualTo("0"));
    }

    private ChildProcess StartQemu(LabHost host, string name, string ramPath, string qmp, bool incoming, IDictionary<string, string>? env)
    {
        string guest = Path.Combine(Paths.Repo, "native/build/guest");
        string[] args =
        [
            "-accel", "tcg", "-m", "256", "-smp", "1",
            "-object", $"memory-backend-file,id=pc.ram,size=256M,mem-path={ramPath},share=on",
            "-machine", "pc,memory-backend=pc.ram",
            "-kernel", Path.Combine(guest, "vmlinuz"), "-initrd", Path.Combine(guest, "initrd.gz"),
            "-append", "console=ttyS0 quiet gc.workload=kv gc.mib=64",
            "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
            "-qmp", $"unix:{qmp},server=on,wait=off",
            .. (incoming ? new[] { "-incoming", "defer" } : []),
        ];
        return Track(new ChildProcess(name, host.Start("qemu-system-x86_64", args, env)));
    }

    private static int WaitHeartbeats(ChildProcess qemu, int count, int afterSeq, TimeSpan timeout)
    {
        int seen = 0, last = 0;
        while (seen < count)
        {
            var hb = ChildProcess.Fields(qemu.WaitFor("GCHB", timeout));
            Assert.That(hb["check"], Is.EqualTo("OK"), "guest memory self-check");
            last = int.Parse(hb["seq"]);
            if (last > afterSeq) seen++;
        }
        return last;
    }

    /// <summary>
    /// A real TCG guest moves hosts with its RAM served by the memory plane: QEMU on host a runs
    /// the kv workload, is stopped and saves device state with x-ignore-shared (RAM stays in its
    /// tmpfs file, frozen); on host b a QEMU with the shim and a fresh RAM file loads that state
    /// and resumes while the pager fills its RAM from host a. The guest's own checks must stay OK.
    /// </summary>
    [Test]
    public void QemuGuestResumesOnAnotherHostWithRamFromThePager()
    {
        string guest = Path.Combine(Paths.Repo, "native/build/guest");
        if (!File.Exists(Path.Combine(guest, "initrd.gz"))) Assert.Ignore("guest images not built (make -C native)");
        string src = "/dev/shm/gcmp-qemu-src", dst = "/dev/shm/gcmp-qemu-dst";
        _lab.A.Run("rm", "-f", src);
        _files.Add((_lab.A, src));
        DestFile("qemu");
        _lab.B.Run("rm", "-f", dst);
        _files.Add((_lab.B, dst));
        string state = Path.Combine(_lab.SharedDir, "gcmp-qemu-state");
        string qmpA = Path.Combine(_lab.SharedDir, "gcmp-qmp-a.sock"), qmpB = Path.Combine(_lab.SharedDir, "gcmp-qmp-b.sock");
        try
        {
            var a = StartQemu(_lab.A, "qemu@a", src, qmpA, incoming: false, env: null);
            int lastA = WaitHeartbeats(a, 3, 0, TimeSpan.FromSeconds(120));
            using (var q = new QmpClient(qmpA, TimeSpan.FromSeconds(10)))
            {
                q.Execute("stop");
                q.Execute("migrate-set-capabilities", new() { ["capabilities"] = new System.Text.Json.Nodes.JsonArray(new System.Text.Json.Nodes.JsonObject { ["capability"] = "x-ignore-shared", ["state"] = true }) });
                q.Execute("migrate", new() { ["uri"] = $"file:{state}" });
                q.WaitMigration(TimeSpan.FromSeconds(60));
                try { q.Execute("quit"); } catch (IOException) { }
            }
            a.WaitForExit(TimeSpan.FromSeconds(30));
            TestContext.Out.WriteLine($"source stopped after heartbeat {lastA}; device state {new FileInfo(state).Length} bytes");

            // The frozen RAM file on host a is what the page server serves.
            string endpoint = $"{_lab.A.Address}:{_port++}";
            var serve = Track(new ChildProcess("serve@a", _lab.A.Start(Paths.Dotnet, [Paths.Helper, "serve", src, endpoint, _secret])));
            serve.WaitFor("LISTENING", TimeSpan.FromSeconds(30));
            string socket = "/run/guidecopy/gcmp-qemu.sock";
            var receive = Receive(socket, endpoint);
            receive.WaitFor("LISTENING", TimeSpan.FromSeconds(30));
            var b = StartQemu(_lab.B, "qemu@b", dst, qmpB, incoming: true, env: new Dictionary<string, string>
            {
                ["LD_PRELOAD"] = Paths.Shim,
                ["GUIDECOPY_RAM_PATH"] = dst,
                ["GUIDECOPY_AGENT_SOCKET"] = socket,
            });
            receive.WaitFor("REGISTERED", TimeSpan.FromSeconds(30));
            using (var q = new QmpClient(qmpB, TimeSpan.FromSeconds(30)))
            {
                q.Execute("migrate-set-capabilities", new() { ["capabilities"] = new System.Text.Json.Nodes.JsonArray(new System.Text.Json.Nodes.JsonObject { ["capability"] = "x-ignore-shared", ["state"] = true }) });
                q.Execute("migrate-incoming", new() { ["uri"] = $"file:{state}" });
                q.WaitMigration(TimeSpan.FromSeconds(60));
                if (q.Execute("query-status")?["running"]?.GetValue<bool>() != true) q.Execute("cont");
            }
            int lastB = WaitHeartbeats(b, 5, lastA, TimeSpan.FromSeconds(60));
            TestContext.Out.WriteLine($"destination heartbeats continue: seq {lastB} after {lastA}, all OK");
            var done = ChildProcess.Fields(receive.WaitFor("DONE", TimeSpan.FromSeconds(180)));
            Assert.That(done["outcome"], Is.EqualTo("Completed"));
            TestContext.Out.WriteLine(string.Join(' ', done.Select(kv => $"{kv.Key}={kv.Value}")));
            // After the uffd is released the guest runs on plain memory: still OK.
            WaitHeartbeats(b, 3, lastB, TimeSpan.FromSeconds(60));
            using (var q = new QmpClient(qmpB, TimeSpan.FromSeconds(10)))
                try { q.Execute("quit"); } catch (IOException) { }
            b.WaitForExit(TimeSpan.FromSeconds(30));
            serve.Stop();
        }
        finally
        {
            File.Delete(state);
            File.Delete(qmpA);
            File.Delete(qmpB);
        }
    }
}
