using System.CommandLine;
using GuideCopy.Cli.GuestWatch;
using GuideCopy.Lab;
using GuideCopy.Migration.Controller;
using GuideCopy.Migration.Report;
using GuideCopy.Guest;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Guide;

namespace GuideCopy.Cli.Commands;

/// <summary>
/// `guidecopy demo`: the README's main job on the local lab — bring the lab up with its agents,
/// boot a workload guest on host a, migrate it to host b with guide-copy, print the report, and
/// tear the lab down (unless --keep).
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var workload = LabCommand.WorkloadOption();
        var mode = new Option<string>("--mode") { Description = "Migration mode (see 'migrate --help').", DefaultValueFactory = _ => "guide" };
        mode.AcceptOnlyFromAmong(MigrateCommand.Modes);
        var guide = new Option<string>("--guide") { Description = "With --mode guide: run the guide clone (on) or not (off).", DefaultValueFactory = _ => "on" };
        guide.AcceptOnlyFromAmong("on", "off");
        var rate = new Option<string?>("--rate") { Description = "Cap the lab link (tc tbf), e.g. 100mbit; default uncapped." };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON." };
        var keep = new Option<bool>("--keep") { Description = "Leave the lab and the migrated guest running afterwards." };
        var name = LabCommand.NameOption();
        var cmd = new Command("demo", "Lab up, a workload guest on host a, guide-copy migration to host b, the report; then lab down.")
        {
            workload, mode, guide, rate, json, keep, name,
        };
        cmd.SetAction(async (p, ct) =>
        {
            string labName = p.GetValue(name)!;
            bool created = false;
            try
            {
                Console.Error.WriteLine($"demo: bringing lab '{labName}' up (two libvirtds in namespaces, agents)");
                var lab = LabCommand.EnsureLabWithAgents(labName, out created, m => Console.Error.WriteLine("  " + m));
                lab.SetLinkRate(p.GetValue(rate));
                var spec = new TestGuestSpec($"demo-{p.GetValue(workload)}", p.GetValue(workload)!);
                TestGuest.Remove(lab, spec.Name);
                var started = DateTime.UtcNow;
                var guest = TestGuest.Boot(lab, lab.A, spec);
                Console.Error.WriteLine($"demo: booted {spec.Name} on host a ({spec.Workload}, {spec.MemoryMiB} MiB RAM on host a's tmpfs); waiting for heartbeats");
                var beats = guest.WaitForHeartbeats(8, TimeSpan.FromSeconds(120));
                Console.Error.WriteLine($"demo: first heartbeat {(beats[0].SeenAt - started).TotalSeconds:0.0} s after start; latest: {beats[^1].Line}");
                var plan = new MigrationPlan(spec.Name,
                    MigrateCommand.ResolveTarget($"lab:{labName}/a", null, out string? secretFile),
                    MigrateCommand.ResolveTarget($"lab:{labName}/b", null, out _),
                    p.GetValue(mode)!, 0, SharedSecret.Read(secretFile!), GuestWatch: new ConsoleGuestWatch(), ObserveAfter: TimeSpan.FromSeconds(5),
                    Guide: new GuideOptions { Enabled = p.GetValue(guide) == "on" });
                string how = plan.Mode != "guide" ? plan.Mode : plan.Guide?.Enabled == true ? "guide-copy, guide on" : "guide-copy, guide off";
                Console.Error.WriteLine($"demo: migrating {spec.Name} lab:a -> lab:b ({how})");
                var report = await MigrateCommand.RunAsync(plan, showProgress: !p.GetValue(json), ct);
                Console.WriteLine(p.GetValue(json) ? report.ToJson() : ReportTable.Render([report]));
                var after = new GuestConsole(guest.ConsolePath).ReadAll();
                Console.Error.WriteLine($"demo: {spec.Name} now runs on host {(lab.B.DomainNames().Contains(spec.Name) ? "b" : "a")}; latest heartbeat: {after[^1].Line}");
                return report.Outcome == MigrationOutcome.Completed && after[^1].IsOk ? ExitCodes.Success : ExitCodes.For(report.Outcome) is 0 ? ExitCodes.Failure : ExitCodes.For(report.Outcome);
            }
            catch (Exception e) when (e is LabException or TimeoutException or AgentException)
            {
                Console.Error.WriteLine($"guidecopy demo: {e.Message}");
                return ExitCodes.Failure;
            }
            finally
            {
                if (!p.GetValue(keep) && (created || LabRig.TryAttach(labName) is not null))
                {
                    LabRig.Down(labName);
                    Console.Error.WriteLine($"demo: lab '{labName}' is down");
                }
            }
        });
        return cmd;
    }
}
