using GuideCopy.Lab;

namespace GuideCopy.Cli.Bench;

/// <summary>Where each side runs: lab hosts a/b (nsenter) or this machine.</summary>
internal sealed record Sides(string Name, string SourceAddress, string SharedDir,
    Func<string, string[], IDictionary<string, string>?, bool, ChildRun> SourceStart,
    Func<string, string[], IDictionary<string, string>?, bool, ChildRun> DestStart)
{
    public ChildRun Source(string name, string[] argv) => SourceStart(name, argv, null, false);
    public ChildRun Dest(string name, string[] argv) => DestStart(name, argv, null, false);
    public ChildRun Dest(string name, string[] argv, IDictionary<string, string> env, bool stdin) => DestStart(name, argv, env, stdin);

    public static Sides Loopback() => new("loopback", "127.0.0.1", Path.GetTempPath(),
        (n, a, e, s) => ChildRun.Start(n, a[0], a[1..], e, s), (n, a, e, s) => ChildRun.Start(n, a[0], a[1..], e, s));

    public static Sides Lab(LabRig lab) => new($"lab '{lab.Layout.Name}' veth", lab.A.Address, lab.SharedDir,
        (n, a, e, s) => ChildRun.Start(n, "nsenter", lab.A.EnterArgs(a[0], a[1..]), e, s),
        (n, a, e, s) => ChildRun.Start(n, "nsenter", lab.B.EnterArgs(a[0], a[1..]), e, s));
}
