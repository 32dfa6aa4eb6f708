using System.CommandLine;
using System.Text.Json;
using GuideCopy.Lab;
using GuideCopy.Guest;

namespace GuideCopy.Cli.Commands;

/// <summary>`guidecopy lab up|status|down|boot|heartbeats`: the local two-host lab.</summary>
internal static class LabCommand
{
    public static Command Create()
    {
        var command = new Command("lab", "The local two-host lab: two libvirtds in their own mount and network namespaces, joined by a veth pair.");
        command.Subcommands.Add(Up());
        command.Subcommands.Add(Status());
        command.Subcommands.Add(Down());
        command.Subcommands.Add(Boot());
        command.Subcommands.Add(Heartbeats());
        return command;
    }

    internal static Option<string> NameOption() => new("--name")
    {
        Description = "Lab name (namespaces <name>-a/<name>-b); default from GUIDECOPY_LAB, else 'gc'.",
        DefaultValueFactory = _ => LabRig.NameFromEnvironment(),
    };

    /// <summary>The test guest's workload: the same option for lab boot, compare and demo (docs/guest.md).</summary>
    internal static Option<string> WorkloadOption()
    {
        var o = new Option<string>("--workload")
        {
            Description = "Guest workload: memtouch, sort or kv (synthetic, self-checking), textsort or textzip (busybox sort / gzip over a text corpus in the page cache).",
            DefaultValueFactory = _ => "memtouch",
        };
        o.AcceptOnlyFromAmong(TestGuestSpec.Workloads);
        return o;
    }

    /// <summary>The test guest's vCPUs (its workload runs a thread on each): lab boot and compare.</summary>
    internal static Option<int> VcpusOption()
    {
        var o = new Option<int>("--vcpus") { Description = "Guest vCPUs; the workload runs one self-checking thread per vCPU.", DefaultValueFactory = _ => 1 };
        o.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() is < 1 or > 16)
            {
                r.AddError("--vcpus must be 1 to 16");
            }
        });
        return o;
    }

    /// <summary>Guest RAM on the lab hosts' hugetlbfs (2 MiB pages): lab up and compare.</summary>
    internal static Option<bool> HugePagesOption() =>
        new("--huge-pages") { Description = "Guest RAM on each host's hugetlbfs in 2 MiB pages (memory_backing_dir); the lab grows vm.nr_hugepages as guests boot and gives the pages back at lab down." };

    private static Command Up()
    {
        var name = NameOption();
        var rate = new Option<string?>("--rate") { Description = "Cap the lab link with tc tbf, e.g. 100mbit (default: uncapped)." };
        var shared = new Option<bool>("--shared-cpus") { Description = "Let both hosts use every CPU (default: host a gets the first half of the CPUs, host b the rest, like two machines)." };
        var journal = new Option<bool>("--journal") { Description = "Run the agents under systemd-cat -t guidecopy-agent, so their lines reach journald with priorities as the unit's do." };
        var hugePages = HugePagesOption();
        var cmd = new Command("up", "Bring the lab up: namespaces, veth link, a libvirtd per host.") { name, rate, shared, journal, hugePages };
        cmd.SetAction(p => Cli.Guard(() =>
        {
            string[] launch = p.GetValue(journal) ? JournaledAgentLaunch() : AgentLaunch;
            var lab = LabRig.Up(p.GetValue(name)!, p.GetValue(rate), Console.WriteLine, p.GetValue(shared), p.GetValue(hugePages));
            try
            {
                lab.StartAgents(launch, NativeBuild.Shim, Console.WriteLine);
            }
            catch (LabException)
            {
                LabRig.Down(lab.Layout.Name);
                throw;
            }

            Console.WriteLine($"lab '{lab.Layout.Name}' is up");
            PrintStatus(lab);
            return ExitCodes.Success;
        }));
        return cmd;
    }

    private static Command Status()
    {
        var name = NameOption();
        var json = new Option<bool>("--json") { Description = "Print the lab state as JSON." };
        var cmd = new Command("status", "Show the lab's hosts, link, libvirt URIs and domains.") { name, json };
        cmd.SetAction(p => Cli.Guard(() =>
        {
            var lab = LabRig.TryAttach(p.GetValue(name)!);
            if (lab is null)
            {
                Console.Error.WriteLine($"lab '{p.GetValue(name)}' is not up");
                return ExitCodes.NotFound;
            }

            if (p.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    lab.State.Name,
                    lab.State.LinkRate,
                    lab.State.StartedAt,
                    Hosts = lab.Hosts.Select(h => new
                    {
                        h.Name, h.Address, h.HolderPid, Alive = h.IsAlive, h.LibvirtUri, h.PeerLibvirtUri,
                        Netns = h.State.Netns, Domains = h.DomainNames(),
                    }),
                    lab.SharedDir,
                }, LabState.Json));
            }
            else
            {
                PrintStatus(lab);
            }

            return lab.Hosts.All(h => h.IsAlive) ? ExitCodes.Success : ExitCodes.Failure;
        }));
        return cmd;
    }

    private static Command Down()
    {
        var name = NameOption();
        var cmd = new Command("down", "Tear the lab down: domains, daemons, processes, namespaces and files.") { name };
        cmd.SetAction(p => Cli.Guard(() =>
        {
            string n = p.GetValue(name)!;
            if (!LabRig.Down(n, Console.WriteLine))
            {
                Console.WriteLine($"lab '{n}' is not up; nothing to tear down");
                return ExitCodes.Success;
            }

            Console.WriteLine($"lab '{n}' is down");
            return ExitCodes.Success;
        }));
        return cmd;
    }

    private static Command Boot()
    {
        var name = NameOption();
        var host = new Option<string>("--host") { Description = "Lab host to boot on: a or b.", DefaultValueFactory = _ => "a" };
        var workload = WorkloadOption();
        var domain = new Option<string?>("--domain") { Description = "Domain name (default gc-<workload>)." };
        var memory = new Option<int>("--memory") { Description = "Guest RAM in MiB.", DefaultValueFactory = _ => 512 };
        var wait = new Option<int>("--heartbeats") { Description = "Wait for this many heartbeats and print them (0: do not wait).", DefaultValueFactory = _ => 3 };
        var guestArgs = new Option<string?>("--guest-args") { Description = "More guest kernel command-line keys, e.g. 'gc.verify_every=64 gc.ws=32'." };
        var vcpus = VcpusOption();
        var cmd = new Command("boot", "Define and start a test guest on a lab host (file RAM on the host's tmpfs, or its hugetlbfs) and show its heartbeats.")
        {
            name, host, workload, domain, memory, wait, guestArgs, vcpus,
        };
        cmd.SetAction(p => Cli.Guard(() =>
        {
            var lab = LabRig.Attach(p.GetValue(name)!);
            var h = lab.Hosts.FirstOrDefault(x => x.Name == p.GetValue(host))
                    ?? throw new LabException($"no lab host '{p.GetValue(host)}': use a or b");
            var spec = new TestGuestSpec(p.GetValue(domain) ?? $"gc-{p.GetValue(workload)}", p.GetValue(workload)!, p.GetValue(memory), ExtraCmdline: p.GetValue(guestArgs),
                Vcpus: p.GetValue(vcpus));
            var started = DateTime.UtcNow;
            var guest = TestGuest.Boot(lab, h, spec);
            Console.WriteLine($"booted {spec.Name} on host {h.Name} ({spec.Workload}, {spec.MemoryMiB} MiB{(h.State.HugePages ? " in 2 MiB pages" : "")}, {spec.Vcpus} vCPU); console {guest.ConsolePath}");
            int n = p.GetValue(wait);
            if (n > 0)
            {
                var first = guest.WaitForHeartbeats(1, TimeSpan.FromSeconds(90));
                Console.WriteLine($"first heartbeat {(first[0].SeenAt - started).TotalSeconds:0.0} s after start");
                foreach (var hb in guest.WaitForHeartbeats(n, TimeSpan.FromSeconds(90)))
                {
                    Console.WriteLine(hb.Line);
                }
            }

            return ExitCodes.Success;
        }));
        return cmd;
    }

    private static Command Heartbeats()
    {
        var name = NameOption();
        var domain = new Argument<string>("domain") { Description = "Test guest domain name." };
        var count = new Option<int>("--last") { Description = "How many of the latest heartbeats to print.", DefaultValueFactory = _ => 5 };
        var cmd = new Command("heartbeats", "Print a test guest's latest heartbeat lines (from its console in the lab's shared directory).") { name, domain, count };
        cmd.SetAction(p => Cli.Guard(() =>
        {
            var lab = LabRig.Attach(p.GetValue(name)!);
            var console = new GuestConsole(TestGuest.ConsolePathFor(lab, p.GetValue(domain)!));
            var beats = console.ReadAll();
            if (beats.Count == 0)
            {
                Console.Error.WriteLine($"no heartbeats yet in {console.Path}");
                return ExitCodes.NotFound;
            }

            foreach (var hb in beats.TakeLast(p.GetValue(count)))
            {
                Console.WriteLine(hb.Line);
            }

            return beats[^1].Check == "OK" ? ExitCodes.Success : ExitCodes.Failure;
        }));
        return cmd;
    }

    /// <summary>The running lab with its agents, or a new one; <paramref name="created"/> says whether to take it down after.</summary>
    internal static LabRig EnsureLabWithAgents(string name, out bool created, Action<string>? log = null, bool hugePages = false)
    {
        var lab = LabRig.EnsureUp(name, out created, hugePages: hugePages);
        if (created || lab.Hosts.Any(h => !File.Exists(h.AgentSocket)))
        {
            try
            {
                lab.StartAgents(AgentLaunch, NativeBuild.Shim, log);
            }
            catch (LabException)
            {
                if (created)
                {
                    LabRig.Down(name);
                }

                throw;
            }
        }

        return lab;
    }

    /// <summary>How to run this very build's CLI inside a lab host (for its agent).</summary>
    internal static string[] AgentLaunch => ["dotnet", typeof(LabCommand).Assembly.Location];

    /// <summary>
    /// The agents as a unit with StandardOutput=journal runs them: systemd-cat connects stdout to
    /// journald's stream socket and sets JOURNAL_STREAM (systemd.exec(5)), so the agent writes
    /// its "&lt;N&gt;" priority prefixes (AgentCommand) and journald files each line at its level.
    /// The lab's hosts share this machine's /run/systemd, so one journald serves both.
    /// </summary>
    private static string[] JournaledAgentLaunch()
    {
        const string journalStream = "/run/systemd/journal/stdout";
        if (!File.Exists(journalStream))
        {
            throw new LabException($"--journal: no journald listens on {journalStream}; start systemd-journald (or run on a systemd host), or leave out --journal");
        }

        return ["systemd-cat", "-t", "guidecopy-agent", .. AgentLaunch];
    }

    private static void PrintStatus(LabRig lab)
    {
        Console.WriteLine($"lab {lab.State.Name}: link {(lab.State.LinkRate ?? "uncapped")}, guest RAM on {(lab.HugePages ? "hugetlbfs (2 MiB pages)" : "tmpfs")}, shared dir {lab.SharedDir}");
        foreach (var h in lab.Hosts)
        {
            var doms = h.IsAlive ? h.DomainNames() : [];
            Console.WriteLine($"  host {h.Name}: {(h.IsAlive ? "up" : "DOWN")}  netns {h.State.Netns}  addr {h.Address}  holder pid {h.HolderPid}  cpus {h.State.Cpus ?? "shared"}");
            Console.WriteLine($"    libvirt {h.LibvirtUri}");
            Console.WriteLine($"    agent   unix:{h.AgentSocket}");
            Console.WriteLine($"    domains: {(doms.Count == 0 ? "(none)" : string.Join(", ", doms))}");
        }
    }
}
