using System.CommandLine;
using System.Text;

namespace GuideCopy.Cli.Commands;

/// <summary>
/// `guidecopy man` and `guidecopy completion bash`: the man page and the bash completion made
/// from the command tree itself, the one source of every command, option and allowed value, so
/// neither can drift from `--help`.
/// </summary>
internal static class CommandTreeDocs
{
    public static Command Man(Func<RootCommand> root)
    {
        var cmd = new Command("man", "Print the guidecopy(1) man page (roff), made from the command tree: guidecopy man > /usr/local/share/man/man1/guidecopy.1");
        cmd.SetAction(_ =>
        {
            Console.Write(ManPage(root()));
            return ExitCodes.Success;
        });
        return cmd;
    }

    public static Command Completion(Func<RootCommand> root)
    {
        var shell = new Argument<string>("shell") { Description = "bash (the only one for now)." };
        shell.AcceptOnlyFromAmong("bash");
        var cmd = new Command("completion", "Print a shell completion script: guidecopy completion bash > /etc/bash_completion.d/guidecopy") { shell };
        cmd.SetAction(_ =>
        {
            Console.Write(BashCompletion(root()));
            return ExitCodes.Success;
        });
        return cmd;
    }

    internal static string ManPage(RootCommand root)
    {
        var b = new StringBuilder();
        b.AppendLine(".TH GUIDECOPY 1 \"\" \"GuideCopy.Kvm\" \"User Commands\"");
        b.AppendLine(".SH NAME");
        b.AppendLine(@"guidecopy \- guide-copy live migration for libvirt-managed QEMU/KVM domains");
        b.AppendLine(".SH SYNOPSIS");
        foreach (var c in Visible(root.Subcommands))
        {
            b.Append(".B guidecopy ").AppendLine(Roff(c.Name)).Append(".RI \"").Append(Roff(Usage(c))).AppendLine("\"").AppendLine(".br");
        }

        b.AppendLine(".SH DESCRIPTION");
        b.AppendLine(Roff(FirstLine(root.Description)));
        b.AppendLine(".SH COMMANDS");
        foreach (var c in Visible(root.Subcommands))
        {
            Describe(b, c, "guidecopy " + c.Name);
        }

        b.AppendLine(".SH EXIT STATUS");
        b.AppendLine(Roff(ExitCodes.CommonHelp));
        b.AppendLine(".PP").AppendLine(Roff(ExitCodes.MigrateHelp));
        b.AppendLine(".SH FILES");
        b.AppendLine(".TP\n.I /etc/guidecopy/guidecopy.json\nEvery setting (docs/configuration.md); GUIDECOPY__SECTION__KEY environment variables and --set override it.");
        b.AppendLine(".TP\n.I /etc/guidecopy/secret\nThe agents' shared secret (mode 0600), the same on every host.");
        b.AppendLine(".TP\n.I /var/lib/guidecopy/journal\nThe agent's journal: one file per migration, what 'guidecopy jobs' lists.");
        b.AppendLine(".SH SEE ALSO");
        b.AppendLine(".BR virsh (1),");
        b.AppendLine(".BR journalctl (1),");
        b.AppendLine(".BR systemctl (1)");
        return b.ToString();
    }

    private static void Describe(StringBuilder b, Command c, string path)
    {
        b.Append(".SS ").AppendLine(Roff(path));
        foreach (string line in (c.Description ?? "").Split('\n'))
        {
            b.AppendLine(Roff(line)).AppendLine(".PP");
        }

        foreach (var o in c.Options.Where(o => !o.Hidden && o.Name is not "--help"))
        {
            b.AppendLine(".TP").Append(".B ").AppendLine(Roff(string.Join(", ", new[] { o.Name }.Concat(o.Aliases))) + Roff(ValueHint(o)));
            b.AppendLine(Roff(o.Description ?? ""));
        }

        foreach (var sub in Visible(c.Subcommands))
        {
            Describe(b, sub, path + " " + sub.Name);
        }
    }

    internal static string BashCompletion(RootCommand root)
    {
        var b = new StringBuilder();
        b.AppendLine("# bash completion for guidecopy, made by 'guidecopy completion bash' from its command tree.");
        b.AppendLine("_guidecopy() {");
        b.AppendLine("  local cur prev words cword");
        b.AppendLine("  _init_completion 2>/dev/null || { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=(\"${COMP_WORDS[@]}\"); cword=$COMP_CWORD; }");
        b.AppendLine("  local path=\"\" w");
        b.AppendLine("  for w in \"${words[@]:1:cword-1}\"; do case \"$w\" in -*) ;; *) case \" $(_guidecopy_subcommands \"$path\") \" in *\" $w \"*) path=\"${path:+$path }$w\" ;; esac ;; esac; done");
        b.AppendLine("  case \"$path|$prev\" in");
        foreach (var (path, c) in Walk(root, ""))
        {
            foreach (var o in c.Options.Where(o => !o.Hidden))
            {
                var values = o.CompletionSources.Count > 0 ? Values(o) : [];
                if (values.Length > 0)
                {
                    b.AppendLine($"    \"{path}|{o.Name}\") COMPREPLY=($(compgen -W \"{string.Join(' ', values)}\" -- \"$cur\")); return ;;");
                }
                else if (o.Name is "--config" or "--secret-file" or "--plot")
                {
                    b.AppendLine($"    \"{path}|{o.Name}\") COMPREPLY=($(compgen -f -- \"$cur\")); return ;;");
                }
            }
        }

        b.AppendLine("  esac");
        b.AppendLine("  case \"$path\" in");
        foreach (var (path, c) in Walk(root, ""))
        {
            string words = string.Join(' ', Visible(c.Subcommands).Select(s => s.Name)
                .Concat(c.Options.Where(o => !o.Hidden).SelectMany(o => new[] { o.Name }.Concat(o.Aliases)).Where(n => n.StartsWith("--", StringComparison.Ordinal))));
            b.AppendLine($"    \"{path}\") COMPREPLY=($(compgen -W \"{words}\" -- \"$cur\")) ;;");
        }

        b.AppendLine("  esac");
        b.AppendLine("}");
        b.AppendLine("_guidecopy_subcommands() {");
        b.AppendLine("  case \"$1\" in");
        foreach (var (path, c) in Walk(root, ""))
        {
            b.AppendLine($"    \"{path}\") echo \"{string.Join(' ', Visible(c.Subcommands).Select(s => s.Name))}\" ;;");
        }

        b.AppendLine("  esac");
        b.AppendLine("}");
        b.AppendLine("complete -F _guidecopy guidecopy");
        return b.ToString();
    }

    private static IEnumerable<(string Path, Command Command)> Walk(Command c, string path)
    {
        yield return (path, c);
        foreach (var sub in Visible(c.Subcommands))
        {
            foreach (var x in Walk(sub, path.Length == 0 ? sub.Name : path + " " + sub.Name))
            {
                yield return x;
            }
        }
    }

    private static string[] Values(Option o)
    {
        // The values AcceptOnlyFromAmong allows are the option's completions.
        var context = System.CommandLine.Completions.CompletionContext.Empty;
        return o.GetCompletions(context).Select(i => i.Label).ToArray();
    }

    private static IEnumerable<Command> Visible(IEnumerable<Command> commands) => commands.Where(c => !c.Hidden);

    private static string Usage(Command c) =>
        string.Join(' ', c.Arguments.Select(a => a.Name.ToUpperInvariant())
            .Concat(c.Options.Where(o => o.Required).Select(o => $"{o.Name} {o.Name.TrimStart('-').ToUpperInvariant()}"))
            .Append(c.Subcommands.Count > 0 ? "SUBCOMMAND" : "[OPTIONS]"));

    private static string ValueHint(Option o) => o.ValueType == typeof(bool) ? "" : " " + o.Name.TrimStart('-').ToUpperInvariant();

    private static string FirstLine(string? text) => (text ?? "").Split('\n')[0];

    /// <summary>Escapes text for roff: backslashes, and a leading dot or quote that would read as a request.</summary>
    private static string Roff(string text)
    {
        string t = text.Replace(@"\", @"\\").Replace("-", @"\-");
        return t.StartsWith('.') || t.StartsWith('\'') ? @"\&" + t : t;
    }
}
