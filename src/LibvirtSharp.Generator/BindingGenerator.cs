using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace LibvirtSharp.Generator;

/// <summary>A function the generator did not emit, and why; <see cref="HandBoundIn"/> names the safe-layer file that binds it by hand.</summary>
public sealed record SkippedFunction(string Name, string Library, string Reason, string? HandBoundIn);

/// <summary>The generated files (name -> content) and the counts the generator reports.</summary>
public sealed record GenerationResult(
    SortedDictionary<string, string> Files,
    int FunctionsInXml,
    int Generated,
    IReadOnlyList<SkippedFunction> NotGenerated)
{
    public int HandBound => NotGenerated.Count(s => s.HandBoundIn is not null);
    public int Skipped => NotGenerated.Count(s => s.HandBoundIn is null);
}

/// <summary>
/// Emits the raw P/Invoke layer from libvirt's API XML. Output is a pure function of the XML:
/// every list is sorted ordinally and nothing time- or machine-dependent is written, so a
/// regeneration diff means the XML (or this generator) changed.
/// </summary>
public sealed partial class BindingGenerator
{
    public const string Namespace = "LibvirtSharp.Native";
    public const string RegenerateCommand = "dotnet run --project src/LibvirtSharp.Generator -- --out src/LibvirtSharp/Generated";

    /// <summary>
    /// Functions the generator skips but the safe layer binds by hand, with the file that does it.
    /// Kept here so Skipped.md is the one list of everything not generated; a test checks that
    /// LibvirtSharp.Native.HandBound declares exactly these.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string> HandBound = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["virConnectDomainEventRegisterAny"] = "src/LibvirtSharp/Native/HandBound.cs",
        ["virConnectDomainQemuMonitorEventRegister"] = "src/LibvirtSharp/Native/HandBound.cs",
        ["virSetErrorFunc"] = "src/LibvirtSharp/Native/HandBound.cs",
    };

    private static readonly HashSet<string> CSharpKeywords =
    [
        "abstract", "as", "base", "bool", "break", "byte", "case", "catch", "char", "checked", "class", "const",
        "continue", "decimal", "default", "delegate", "do", "double", "else", "enum", "event", "explicit", "extern",
        "false", "finally", "fixed", "float", "for", "foreach", "goto", "if", "implicit", "in", "int", "interface",
        "internal", "is", "lock", "long", "namespace", "new", "null", "object", "operator", "out", "override",
        "params", "private", "protected", "public", "readonly", "ref", "return", "sbyte", "sealed", "short",
        "sizeof", "stackalloc", "static", "string", "struct", "switch", "this", "throw", "true", "try", "typeof",
        "uint", "ulong", "unchecked", "unsafe", "ushort", "using", "virtual", "void", "volatile", "while",
    ];

    private readonly ApiModel _model;
    private readonly TypeMapper _types;
    private readonly Dictionary<string, long> _enumValues = new(StringComparer.Ordinal);

    public BindingGenerator(ApiModel model)
    {
        _model = model;
        _types = new TypeMapper(model);
        ResolveEnumValues();
    }

    public GenerationResult Generate()
    {
        var files = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var skipped = new List<SkippedFunction>();
        int generated = 0;

        foreach (var group in _model.Functions.GroupBy(f => (f.Library, f.File)).OrderBy(g => g.Key.Library, StringComparer.Ordinal).ThenBy(g => g.Key.File, StringComparer.Ordinal))
        {
            bool qemu = group.Key.Library == "libvirt-qemu.so.0";
            string className = qemu ? "LibvirtQemu" : "Libvirt";
            var sb = new StringBuilder();
            Header(sb, "using System.Runtime.InteropServices;");
            sb.Append("public static unsafe partial class ").Append(className).Append("\n{\n");
            bool first = true;
            foreach (var f in group.OrderBy(f => f.Name, StringComparer.Ordinal))
            {
                string? decl = Function(f, out string? why);
                if (decl is null)
                {
                    skipped.Add(new SkippedFunction(f.Name, f.Library, why!, HandBound.GetValueOrDefault(f.Name)));
                    continue;
                }
                if (!first) sb.Append('\n');
                first = false;
                sb.Append(decl);
                generated++;
            }
            sb.Append("}\n");
            string fileName = qemu ? "LibvirtQemu.g.cs" : $"Libvirt.{Pascal(group.Key.File)}.g.cs";
            files[fileName] = sb.ToString();
        }

        files["Libraries.g.cs"] = Libraries();
        foreach (var (name, text) in Enums()) files[name] = text;
        files["Structs.g.cs"] = Structs();
        var skippedMacros = new List<(string Name, string Reason)>();
        files["Macros.g.cs"] = Macros(skippedMacros);
        files["TypedParamFields.g.cs"] = TypedParamFields();

        skipped.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        var result = new GenerationResult(files, _model.Functions.Count, generated, skipped);
        files["Skipped.md"] = SkippedReport(result, skippedMacros);
        return result;
    }

    // ---- functions ------------------------------------------------------------------------

    private string? Function(ApiFunction f, out string? why)
    {
        why = null;
        string? ret = _types.Map(f.Return.CType, TypePosition.Return, out string? retWhy);
        if (ret is null) { why = $"returns {retWhy}"; return null; }
        var args = new List<string>();
        for (int i = 0; i < f.Args.Count; i++)
        {
            var a = f.Args[i];
            string? argWhy = null;
            string? t = IsByteBuffer(f, i) ? "byte*" : _types.Map(a.CType, TypePosition.Argument, out argWhy);
            if (t is null) { why = $"argument `{a.Name}` is a {argWhy}"; return null; }
            args.Add($"{t} {Ident(a.Name)}");
        }

        var sb = new StringBuilder();
        if (f.Summary.Length > 0) sb.Append("    /// <summary>").Append(Xml(f.Summary)).Append("</summary>\n");
        string retNote = f.Return.CType.Trim() switch
        {
            "char *" => " Returns a string the caller frees with free().",
            "const char *" => " Returns a string owned by libvirt (do not free).",
            _ => "",
        };
        sb.Append("    /// <remarks>C: <c>").Append(Xml(CSignature(f))).Append("</c>; since libvirt ").Append(f.Version).Append('.')
          .Append(retNote).Append("</remarks>\n");
        bool strings = args.Any(a => a.StartsWith("string", StringComparison.Ordinal));
        sb.Append("    [LibraryImport(Library").Append(strings ? ", StringMarshalling = StringMarshalling.Utf8" : "").Append(")]\n");
        sb.Append("    public static partial ").Append(ret).Append(' ').Append(f.Name).Append('(').Append(string.Join(", ", args)).Append(");\n");
        return sb.ToString();
    }

    /// <summary>
    /// A "const char *" followed by a size_t is a byte buffer with its length (virStreamSend's
    /// data), not a NUL-terminated string: it must not be UTF-8 marshalled.
    /// </summary>
    private static bool IsByteBuffer(ApiFunction f, int i) =>
        f.Args[i].CType.Trim() == "const char *" && i + 1 < f.Args.Count && f.Args[i + 1].CType.Trim() == "size_t";

    private static string CSignature(ApiFunction f) =>
        $"{f.Return.CType} {f.Name}({string.Join(", ", f.Args.Select(a => $"{a.CType} {a.Name}"))})";

    private string Libraries()
    {
        var sb = new StringBuilder();
        Header(sb);
        sb.Append("public static partial class Libvirt\n{\n    /// <summary>The shared object every libvirt.so function is imported from.</summary>\n    public const string Library = \"libvirt.so.0\";\n}\n\n");
        sb.Append("public static partial class LibvirtQemu\n{\n    /// <summary>The shared object the QEMU-specific functions are imported from.</summary>\n    public const string Library = \"libvirt-qemu.so.0\";\n}\n");
        return sb.ToString();
    }

    // ---- enums ----------------------------------------------------------------------------

    private void ResolveEnumValues()
    {
        var raw = _model.EnumMembersByType.Values.SelectMany(m => m).ToDictionary(m => m.Name, m => m.RawValue, StringComparer.Ordinal);
        foreach (string name in raw.Keys) _enumValues[name] = ResolveEnum(name, raw, 0);
    }

    private long ResolveEnum(string name, Dictionary<string, string> raw, int depth)
    {
        if (_enumValues.TryGetValue(name, out long known)) return known;
        if (depth > 16) throw new InvalidDataException($"enum value loop at {name}");
        string v = raw[name].Trim();
        if (long.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long n)) return n;
        if (raw.ContainsKey(v)) return _enumValues[name] = ResolveEnum(v, raw, depth + 1);
        throw new InvalidDataException($"enum {name} has value '{v}' the generator cannot resolve");
    }

    private IEnumerable<(string, string)> Enums()
    {
        foreach (var byFile in _model.EnumMembersByType.GroupBy(kv => _model.EnumFileByType[kv.Key]).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var sb = new StringBuilder();
            Header(sb);
            bool first = true;
            foreach (var (type, members) in byFile.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                var values = members.Select(m => (m, v: _enumValues[m.Name])).OrderBy(x => x.v).ThenBy(x => x.m.Name, StringComparer.Ordinal).ToList();
                bool flags = type.Contains("Flags", StringComparison.Ordinal) || members.Any(m => m.HasBitShift);
                long min = values.Min(x => x.v), max = values.Max(x => x.v);
                string underlying =
                    flags && min >= 0 && max <= uint.MaxValue ? "uint"
                    : min >= int.MinValue && max <= int.MaxValue ? "int"
                    : min >= 0 && max <= uint.MaxValue ? "uint" : "long";
                if (!first) sb.Append('\n');
                first = false;
                sb.Append("/// <summary><c>").Append(type).Append("</c> from ").Append(byFile.Key).Append(".h.</summary>\n");
                if (flags) sb.Append("[Flags]\n");
                sb.Append("public enum ").Append(type).Append(" : ").Append(underlying).Append("\n{\n");
                foreach (var (m, v) in values)
                {
                    if (m.Summary.Length > 0) sb.Append("    /// <summary>").Append(Xml(m.Summary)).Append("</summary>\n");
                    sb.Append("    ").Append(m.Name).Append(" = ").Append(v.ToString(CultureInfo.InvariantCulture)).Append(",\n");
                }
                sb.Append("}\n");
            }
            yield return ($"Enums.{Pascal(byFile.Key)}.g.cs", sb.ToString());
        }
    }

    // ---- structs --------------------------------------------------------------------------

    private string Structs()
    {
        var sb = new StringBuilder();
        Header(sb, "using System.Runtime.InteropServices;");
        bool first = true;
        foreach (var group in _model.Structs.Where(s => s.Fields.Count > 0).GroupBy(s => _types.CanonicalStructName[s.Name]).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var s = group.First(x => x.Name == group.Key);
            var aliases = group.Select(x => x.Name).Where(n => n != group.Key).Order(StringComparer.Ordinal).ToList();
            if (!first) sb.Append('\n');
            first = false;
            sb.Append("/// <summary><c>").Append(Xml(s.CTag)).Append("</c> from ").Append(s.File).Append(".h");
            if (aliases.Count > 0) sb.Append("; also used for ").Append(string.Join(", ", aliases.Select(a => $"<c>{a}</c>")));
            sb.Append(".</summary>\n[StructLayout(LayoutKind.Sequential)]\npublic unsafe struct ").Append(group.Key).Append("\n{\n");
            var nested = new StringBuilder();
            foreach (var f in s.Fields) Field(sb, nested, f, "    ");
            sb.Append(nested).Append("}\n");
        }
        return sb.ToString();
    }

    private void Field(StringBuilder sb, StringBuilder nested, ApiField f, string indent, bool explicitOffset = false)
    {
        string prefix = indent + (explicitOffset ? "[FieldOffset(0)] " : "") + "public ";
        if (f.CType == "union")
        {
            string unionName = f.Name + "_union";
            sb.Append(prefix).Append(unionName).Append(' ').Append(Ident(f.Name)).Append(";\n");
            nested.Append('\n').Append(indent).Append("[StructLayout(LayoutKind.Explicit)]\n").Append(indent).Append("public unsafe struct ").Append(unionName).Append('\n').Append(indent).Append("{\n");
            var inner = new StringBuilder();
            foreach (var m in f.UnionMembers) Field(nested, inner, m, indent + "    ", explicitOffset: true);
            nested.Append(inner).Append(indent).Append("}\n");
            return;
        }
        var array = ArrayRegex().Match(f.CType);
        if (array.Success)
        {
            string? elem = _types.Map(array.Groups[1].Value, TypePosition.Field, out string? why)
                ?? throw new InvalidDataException($"field {f.Name}: {why}");
            string size = array.Groups[3].Value.Trim();
            string sizeExpr = int.TryParse(size, CultureInfo.InvariantCulture, out _) ? size : "Macros." + size;
            sb.Append(prefix).Append("fixed ").Append(elem).Append(' ').Append(Ident(f.Name)).Append('[').Append(sizeExpr).Append("];\n");
            return;
        }
        string? t = _types.Map(f.CType, TypePosition.Field, out string? fieldWhy)
            ?? throw new InvalidDataException($"field {f.Name} ({f.CType}): {fieldWhy}");
        sb.Append(prefix).Append(t).Append(' ').Append(Ident(f.Name)).Append(";\n");
    }

    // ---- macros ---------------------------------------------------------------------------

    private string Macros(List<(string Name, string Reason)> skipped)
    {
        var ints = _model.Macros.Where(m => m.StringValue is null).ToDictionary(m => m.Name, StringComparer.Ordinal);
        var emitted = new SortedDictionary<string, (string Type, string Expr, string File)>(StringComparer.Ordinal);
        foreach (var m in ints.Values)
        {
            if (m.Params is not null) { skipped.Add((m.Name, "function-like macro")); continue; }
            var value = IntMacro(m, ints, 0);
            if (value is null) { skipped.Add((m.Name, $"not an integer constant: `{m.Raw}`")); continue; }
            emitted[m.Name] = (value.Value.Type, value.Value.Expr, m.File);
        }
        skipped.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));

        var sb = new StringBuilder();
        Header(sb);
        sb.Append("/// <summary>libvirt's integer #defines.</summary>\npublic static class Macros\n{\n");
        foreach (var (name, (type, expr, file)) in emitted)
            sb.Append("    /// <summary>From ").Append(file).Append(".h.</summary>\n    public const ").Append(type).Append(' ').Append(name).Append(" = ").Append(expr).Append(";\n");
        sb.Append("}\n");
        return sb.ToString();
    }

    private (string Type, string Expr)? IntMacro(ApiMacro m, Dictionary<string, ApiMacro> ints, int depth)
    {
        if (depth > 8 || m.Params is not null || string.IsNullOrWhiteSpace(m.Raw)) return null;
        string raw = CommentRegex().Replace(m.Raw, "").Trim();
        bool wide = false;
        raw = LiteralSuffixRegex().Replace(raw, match =>
        {
            if (match.Groups[2].Value.Contains("LL", StringComparison.OrdinalIgnoreCase)) wide = true;
            return match.Groups[1].Value;
        });
        if (ints.TryGetValue(raw, out var target))
            return IntMacro(target, ints, depth + 1) is { } t ? (t.Type, raw) : null;
        if (_enumValues.TryGetValue(raw, out long enumValue))
            return ("int", enumValue.ToString(CultureInfo.InvariantCulture));
        if (!ArithmeticRegex().IsMatch(raw)) return null;
        foreach (Match lit in NumberRegex().Matches(raw))
            if (!int.TryParse(lit.Value, CultureInfo.InvariantCulture, out _)) wide = true;
        return (wide ? "long" : "int", raw);
    }

    private string TypedParamFields()
    {
        var sb = new StringBuilder();
        Header(sb);
        sb.Append("/// <summary>\n/// libvirt's string #defines: the field names of typed parameters (VIR_MIGRATE_PARAM_*,\n/// VIR_DOMAIN_JOB_*, VIR_DOMAIN_BANDWIDTH_*, ...).\n/// </summary>\npublic static class TypedParamFields\n{\n");
        foreach (var m in _model.Macros.Where(m => m.StringValue is not null).OrderBy(m => m.Name, StringComparer.Ordinal))
            sb.Append("    /// <summary>From ").Append(m.File).Append(".h.</summary>\n    public const string ").Append(m.Name).Append(" = \"")
              .Append(m.StringValue!.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal)).Append("\";\n");
        sb.Append("}\n");
        return sb.ToString();
    }

    // ---- the one list of what is not generated ---------------------------------------------

    private string SkippedReport(GenerationResult r, List<(string Name, string Reason)> macros)
    {
        var sb = new StringBuilder();
        sb.Append("<!-- Generated by LibvirtSharp.Generator; do not edit. Regenerate with: ").Append(RegenerateCommand).Append(" -->\n");
        sb.Append("# Functions and macros not generated (libvirt ").Append(_model.LibvirtVersion).Append(")\n\n");
        sb.Append("| | count |\n|---|---|\n");
        sb.Append("| functions in the API XML (libvirt + libvirt-qemu) | ").Append(r.FunctionsInXml).Append(" |\n");
        sb.Append("| generated as `[LibraryImport]` | ").Append(r.Generated).Append(" |\n");
        sb.Append("| not generated, bound by hand in the safe layer | ").Append(r.HandBound).Append(" |\n");
        sb.Append("| not generated, skipped | ").Append(r.Skipped).Append(" |\n\n");
        sb.Append("A callback argument needs a managed trampoline whose target outlives the registration; the\n");
        sb.Append("generator cannot know that lifetime, so every function taking one is left to the safe layer.\n\n");
        sb.Append("## Functions\n\n| function | library | reason | bound by hand in |\n|---|---|---|---|\n");
        foreach (var s in r.NotGenerated)
            sb.Append("| `").Append(s.Name).Append("` | ").Append(s.Library).Append(" | ").Append(s.Reason.Replace("|", "\\|", StringComparison.Ordinal))
              .Append(" | ").Append(s.HandBoundIn is null ? "skipped" : $"`{s.HandBoundIn}`").Append(" |\n");
        sb.Append("\n## Macros\n\n| macro | reason |\n|---|---|\n");
        foreach (var (name, reason) in macros)
            sb.Append("| `").Append(name).Append("` | ").Append(reason.Replace("|", "\\|", StringComparison.Ordinal)).Append(" |\n");
        return sb.ToString();
    }

    // ---- helpers --------------------------------------------------------------------------

    private void Header(StringBuilder sb, params string[] usings)
    {
        sb.Append("// <auto-generated>\n");
        sb.Append("// Generated by LibvirtSharp.Generator from libvirt-api.xml and libvirt-qemu-api.xml (libvirt ").Append(_model.LibvirtVersion).Append(").\n");
        sb.Append("// Do not edit; regenerate with:\n//   ").Append(RegenerateCommand).Append('\n');
        sb.Append("// </auto-generated>\n#nullable enable\n");
        foreach (string u in usings) sb.Append(u).Append('\n');
        sb.Append("\nnamespace ").Append(Namespace).Append(";\n\n");
    }

    /// <summary>"libvirt-domain-snapshot" -> "DomainSnapshot", "virterror" -> "Virterror", "libvirt" -> "Main".</summary>
    private static string Pascal(string file)
    {
        string rest = file == "libvirt" ? "main" : file.StartsWith("libvirt-", StringComparison.Ordinal) ? file["libvirt-".Length..] : file;
        return string.Concat(rest.Split('-', StringSplitOptions.RemoveEmptyEntries).Select(p => char.ToUpperInvariant(p[0]) + p[1..]));
    }

    private static string Ident(string name) => CSharpKeywords.Contains(name) ? "@" + name : name;

    private static string Xml(string s) =>
        s.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal).Replace(">", "&gt;", StringComparison.Ordinal);

    [GeneratedRegex(@"^(.*?)\s*(\w+)\s*\[(.+)\]$")]
    private static partial Regex ArrayRegex();

    [GeneratedRegex(@"/\*.*?\*/")]
    private static partial Regex CommentRegex();

    [GeneratedRegex(@"\b(\d+)(U?LL|ULL|LLU|U|L)\b", RegexOptions.IgnoreCase)]
    private static partial Regex LiteralSuffixRegex();

    [GeneratedRegex(@"^[\d\s()+\-*/<|]+$")]
    private static partial Regex ArithmeticRegex();

    [GeneratedRegex(@"\d+")]
    private static partial Regex NumberRegex();
}
