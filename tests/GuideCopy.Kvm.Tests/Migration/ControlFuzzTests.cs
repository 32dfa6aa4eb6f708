using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using CsCheck;
using GuideCopy.Unit.Tests;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Host;
using GuideCopy.Migration.Journal;

namespace GuideCopy.Kvm.Tests.Migration;

/// <summary>
/// The agent's control requests and its journal files, fuzzed (<see cref="Fuzz"/>). Requests go
/// to a real AgentServer over a real authenticated channel: each starts as a valid request of
/// one op and gets fields replaced by wrong types, boundary numbers, hostile ids and paths,
/// or dropped. Every one must be answered (ok, or an error in words), the agent must go on
/// serving, and nothing outside its own directories may be touched. Journal files are mutated
/// on disk: reading them back never throws anything but "unreadable".
/// </summary>
[Category("Fuzz")]
[NonParallelizable]
public sealed class ControlFuzzTests
{
    private string _dir = "";
    private AgentServer _agent = null!;
    private CancellationTokenSource _stop = null!;
    private Task _running = null!;
    private AgentEndpoint _endpoint = null!;
    private byte[] _secret = [];

    private static readonly string[] Ids = ["fz-1", "fz-2", "../victim", "/etc", "", ".hidden", new string('a', 65), "a/b", "x\0y"];

    [OneTimeSetUp]
    public void Up()
    {
        _dir = Directory.CreateTempSubdirectory("gc-fuzz-").FullName;
        Directory.CreateDirectory(Path.Combine(_dir, "victim"));
        File.WriteAllText(Path.Combine(_dir, "secret"), "fuzzing-secret-0123456789");
        int port = 17000 + Environment.ProcessId % 2000;
        var options = new AgentOptions
        {
            SecretFile = Path.Combine(_dir, "secret"),
            ControlSocket = Path.Combine(_dir, "agent.sock"),
            ControlListen = $"127.0.0.1:{port}",
            WorkDir = Path.Combine(_dir, "work", "run"),
            JournalDir = Path.Combine(_dir, "journal"),
            LibvirtUri = $"qemu+unix:///system?socket={_dir}/no-libvirt.sock",
            RamDir = Path.Combine(_dir, "ram"),
        };
        _secret = SharedSecret.Read(options.SecretFile);
        _agent = new AgentServer(options, AgentLog.To(_ => { }));
        _stop = new CancellationTokenSource();
        _running = Task.Run(() => _agent.RunAsync(_stop.Token));
        _endpoint = AgentEndpoint.Parse($"tcp:127.0.0.1:{port}");
        // The agent opens its UNIX socket first, then the TCP listener the fuzz goes to: wait for the latter.
        SpinWait.SpinUntil(() => File.Exists(options.ControlSocket) && TcpAccepts(port), 10_000);
    }

    private static bool TcpAccepts(int port)
    {
        try
        {
            using var probe = new System.Net.Sockets.TcpClient();
            probe.Connect("127.0.0.1", port);
            return true;
        }
        catch (System.Net.Sockets.SocketException)
        {
            Thread.Sleep(20);
            return false;
        }
    }

    [OneTimeTearDown]
    public async Task Down()
    {
        _stop.Cancel();
        await _running.WaitAsync(TimeSpan.FromSeconds(30));
        Directory.Delete(_dir, recursive: true);
    }

    private static Gen<string> Id => Gen.Int[0, Ids.Length - 1].Select(i => Ids[i]);

    /// <summary>A valid request of each op (the hostile ids are in <see cref="Ids"/> too: the agent's own check must stop them).</summary>
    private static readonly Gen<(string Op, object Args)> Requests = Gen.OneOf(
        Id.Select(id => (AgentOps.Lease, (object)new MigrationRequest(id))),
        Gen.Const((AgentOps.Jobs, (object)new Empty())),
        Id.Select(Gen.Bool, (id, rb) => (AgentOps.Abort, (object)new AbortRequest(id, rb))),
        Gen.String.Select(d => (AgentOps.SourcePrepare, (object)new DomainRequest(d))),
        Id.Select(Gen.String, (id, d) => (AgentOps.SourceGuidePrepare, (object)new GuidePrepareRequest(id, d))),
        Id.Select(Gen.Long, Gen.Bool, (id, bw, push) => (AgentOps.SourceArm, (object)new SourceArmRequest(id, "fz-dom", bw, push))),
        Id.Select(id => (AgentOps.SourceSwitchover, (object)new SwitchoverRequest(id, "fz-dom"))),
        Id.Select(id => (AgentOps.SourceFinish, (object)new MigrationRequest(id))),
        Id.Select(id => (AgentOps.SourceAbort, (object)new MigrationRequest(id))),
        Gen.Long.Select(ram => (AgentOps.DestinationCheck, (object)new DestinationCheckRequest("fz-dom", ["/nonexistent/disk.qcow2", "../x"], ram))),
        Id.Select(Gen.String, (id, xml) => (AgentOps.DestinationPrepare, (object)new DestinationPrepareRequest(id, "<domain type='qemu'><name>fz</name>" + xml + "</domain>", "fz-dom"))),
        Id.Select(Gen.ULong, (id, session) => (AgentOps.DestinationArm, (object)new DestinationArmRequest(id, "127.0.0.1:1", session))),
        Id.Select(Gen.Bool, (id, commit) => (AgentOps.DestinationLoad, (object)new DestinationLoadRequest(id, commit))),
        Id.Select(id => (AgentOps.DestinationResume, (object)new MigrationRequest(id))),
        Id.Select(id => (AgentOps.DestinationStatus, (object)new MigrationRequest(id))),
        Id.Select(id => (AgentOps.DestinationFinish, (object)new DestinationFinishRequest(id, null))),
        Id.Select(Gen.Bool, (id, rb) => (AgentOps.DestinationAbort, (object)new AbortRequest(id, rb))));

    private static readonly JsonNode?[] HostileValues =
    [
        null, 0, -1, long.MaxValue, double.MaxValue, "", "../../etc/passwd", "/etc", new string('x', 70_000), true,
        new JsonArray(), new JsonObject(), new JsonArray(1, 2), "AAAA====", "tcp:999.1.1.1:99999",
    ];

    /// <summary>Replaces, drops or adds fields of the request (op included), 0-3 times.</summary>
    private static readonly Gen<JsonObject> MutatedRequests =
        Requests.Select(Gen.Int[0, 3], Gen.Int[0, int.MaxValue].Array[6], (r, n, picks) =>
        {
            var request = new JsonObject { ["op"] = r.Op, ["args"] = JsonSerializer.SerializeToNode(r.Args, ControlChannel.Json) };
            for (int i = 0; i < n; i++)
            {
                var target = picks[2 * i] % 4 == 0 ? request : request["args"] as JsonObject ?? request;
                var names = target.Select(p => p.Key).ToList();
                int pick = picks[2 * i + 1];
                var value = HostileValues[pick % HostileValues.Length]?.DeepClone();
                switch (pick % 3)
                {
                    case 0 when names.Count > 0: target[names[pick % names.Count]] = value; break;
                    case 1 when names.Count > 0: target.Remove(names[pick % names.Count]); break;
                    default: target["extra" + pick % 5] = value; break;
                }
            }

            return request;
        });

    [Test]
    public async Task EveryRequestIsAnsweredAndTheAgentGoesOn()
    {
        var channel = await ControlChannel.ConnectAsync(_endpoint, _secret, CancellationToken.None);
        long iterations = Math.Max(200, Fuzz.Iterations / 10); // each is a round trip to a real agent
        try
        {
            Fuzz.Run("control request", MutatedRequests.Select(r => r.ToJsonString()), json =>
            {
                var request = JsonNode.Parse(json)!.AsObject();
                JsonObject reply;
                try
                {
                    channel.WriteAsync(request, CancellationToken.None).GetAwaiter().GetResult();
                    reply = channel.ReadAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();
                }
                catch (IOException)
                {
                    // A message over the size limit is refused by our own side; reconnect and go on.
                    channel = ControlChannel.ConnectAsync(_endpoint, _secret, CancellationToken.None).GetAwaiter().GetResult();
                    return false;
                }

                Assert.That(reply["ok"], Is.Not.Null, $"no 'ok' in the reply to {json[..Math.Min(json.Length, 300)]}");
                bool ok = reply["ok"]!.GetValue<bool>();
                if (!ok) Assert.That(reply["error"]?.GetValue<string>(), Is.Not.Empty, "a refusal must say why");
                return ok;
            }, json => json.Length > 400 ? json[..400] : json, iterations);
        }
        finally
        {
            await channel.DisposeAsync();
        }

        Assert.That(Directory.Exists(Path.Combine(_dir, "victim")), "a hostile id reached a directory outside the agent's own");
        await using var fresh = await ControlChannel.ConnectAsync(_endpoint, _secret, CancellationToken.None);
        var jobs = await fresh.CallAsync<JsonObject>(AgentOps.Jobs, new Empty(), CancellationToken.None);
        Assert.That(jobs, Is.Not.Null, "the agent stopped answering");
    }

    [Test]
    public async Task GarbageBeforeTheHandshakeClosesOnlyThatConnection()
    {
        // Unauthenticated bytes: random lengths and JSON; the agent must neither allocate what a
        // length says nor stop serving others.
        Fuzz.Run("control handshake", Gen.Byte.Array[0, 64], bytes =>
        {
            using var s = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            s.Connect(System.Net.IPEndPoint.Parse(_endpoint.ToString()["tcp:".Length..]));
            s.ReceiveTimeout = 5000;
            var hello = new byte[4096];
            s.Receive(hello); // the agent speaks first
            s.Send(bytes);
            s.Shutdown(System.Net.Sockets.SocketShutdown.Send);
            try
            {
                while (s.Receive(hello) > 0) { }
            }
            catch (System.Net.Sockets.SocketException)
            {
            }

            // "Accepted": long enough to hold a length prefix and more, so the agent had to judge
            // it (a shorter one is a peer that hung up). Both kinds are generated: 8 of 65 lengths are short.
            return bytes.Length >= 8;
        }, Fuzz.Hex, Math.Max(100, Fuzz.Iterations / 100));
        await using var check = await ControlChannel.ConnectAsync(_endpoint, _secret, CancellationToken.None);
    }

    [Test]
    public void JournalFilesReadBackOrAreSkipped()
    {
        var journal = new MigrationJournal(Path.Combine(_dir, "journal-fuzz"));
        var entries = Gen.Select(Gen.Int[0, 9], Gen.Long, Gen.ULong, Gen.Bool, (stage, n, session, persistent) => new JournalEntry
        {
            Id = "fz-journal", Role = MigrationRole.Destination, Domain = "fz-dom", Stage = (MigrationStage)stage,
            FrozenRam = "/dev/shm/x.ram", SessionId = session, BandwidthBytesPerSecond = n, Persistent = persistent, PageServer = "10.0.0.1:7171",
        });
        Fuzz.Run("journal file", entries.SelectMany(e =>
        {
            journal.Write(e);
            var bytes = File.ReadAllBytes(Path.Combine(journal.Directory, "fz-journal.json"));
            return Fuzz.Mutated(Gen.Const(bytes));
        }), bytes =>
        {
            File.WriteAllBytes(Path.Combine(journal.Directory, "fz-journal.json"), bytes);
            var unreadable = new List<string>();
            var all = journal.ReadAll(unreadable.Add); // an agent's start: must never throw
            Assert.That(all.Count + unreadable.Count, Is.EqualTo(1));
            if (all.Count == 0) return false;
            Assert.That(MigrationJournal.IsValidId(all[0].Id));
            Assert.That(Enum.IsDefined(all[0].Stage), $"stage {all[0].Stage} is not a stage");
            return true;
        }, b => Encoding.UTF8.GetString(b), Math.Max(500, Fuzz.Iterations / 4)); // each writes and fsyncs a file
    }
}
