namespace GuideCopy.Lab;

/// <summary>
/// An unprivileged local user for the security tests (docs/security.md, "Local users"), and the
/// way to run a program as it, or as any user with chosen groups, with setpriv(1): real uid,
/// gid and supplementary groups all set, no capabilities left (a non-root uid drops them).
/// </summary>
public static class LocalAttacker
{
    public const string User = "gcattacker";

    /// <summary>native/build/tools/shim-peer: a process that is not QEMU at either end of a shim socket.</summary>
    public static string ShimPeer => Path.Combine(NativeBuild.Tools, "shim-peer");

    /// <summary>Creates the system user <see cref="User"/> (and its own group) unless it exists.</summary>
    public static void EnsureUser()
    {
        if (!CommandRunner.Run("getent", "passwd", User).Succeeded)
        {
            CommandRunner.Check("useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", User);
        }
    }

    /// <summary>The argument list that runs <paramref name="program"/> as <paramref name="user"/>:<paramref name="group"/> with exactly <paramref name="groups"/>.</summary>
    public static string[] As(string user, string group, string[] groups, string program, params string[] args) =>
        ["setpriv", "--reuid", user, "--regid", group, .. groups.Length == 0 ? ["--clear-groups"] : new[] { "--groups", string.Join(',', groups) },
         "--", program, .. args];

    /// <summary>Runs <paramref name="program"/> as the attacker user (its own group only).</summary>
    public static CommandResult Run(string program, params string[] args)
    {
        var argv = As(User, User, [], program, args);
        return CommandRunner.Run(argv[0], argv[1..], TimeSpan.FromSeconds(60));
    }
}
