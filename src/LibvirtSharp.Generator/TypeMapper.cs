using System.Text.RegularExpressions;

namespace LibvirtSharp.Generator;

/// <summary>Where a C type appears: the same C type maps differently as an argument, a return value or a struct field.</summary>
public enum TypePosition { Argument, Return, Field }

/// <summary>
/// Maps libvirt's C types to blittable C# types. Every mapping is pointer-exact: objects
/// (virConnectPtr, virDomainPtr, ...) become <c>nint</c>, structs with known fields become typed
/// pointers, and the only marshalled type is an input <c>const char *</c> (UTF-8 string).
/// Returned strings stay <c>nint</c> so the safe layer decides who frees them.
/// </summary>
public sealed partial class TypeMapper
{
    private static readonly Dictionary<string, string> Primitives = new(StringComparer.Ordinal)
    {
        ["void"] = "void",
        ["char"] = "byte",
        ["unsigned char"] = "byte",
        ["short"] = "short",
        ["unsigned short"] = "ushort",
        ["int"] = "int",
        ["unsigned int"] = "uint",
        // C long is 64-bit on LP64 Linux, the only platform these bindings target.
        ["long"] = "nint",
        ["unsigned long"] = "nuint",
        ["long long"] = "long",
        ["unsigned long long"] = "ulong",
        ["size_t"] = "nuint",
        ["ssize_t"] = "nint",
        ["double"] = "double",
    };

    private readonly ApiModel _model;
    private readonly Dictionary<string, ApiStruct> _structsByName;

    /// <summary>Struct name to the C# struct emitted for its C tag (aliases share one definition).</summary>
    public IReadOnlyDictionary<string, string> CanonicalStructName { get; }

    public TypeMapper(ApiModel model)
    {
        _model = model;
        _structsByName = model.Structs.ToDictionary(s => s.Name, StringComparer.Ordinal);
        var canonical = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var group in model.Structs.Where(s => s.Fields.Count > 0).GroupBy(s => s.CTag))
        {
            string tag = group.Key.Replace("struct ", "", StringComparison.Ordinal).TrimStart('_');
            string pick = group.Any(s => s.Name == tag) ? tag : group.Select(s => s.Name).Order(StringComparer.Ordinal).First();
            foreach (var s in group) canonical[s.Name] = pick;
        }
        CanonicalStructName = canonical;
    }

    /// <summary>A C# type for <paramref name="cType"/>, or null with <paramref name="unmappable"/> saying why.</summary>
    public string? Map(string cType, TypePosition position, out string? unmappable)
    {
        unmappable = null;
        string t = cType.Trim();
        int stars = t.Count(c => c == '*');
        bool isConst = ConstRegex().IsMatch(t);
        string baseName = Normalize(ConstRegex().Replace(t.Replace("*", " ", StringComparison.Ordinal), " "));

        if (baseName == "char" && stars == 1)
        {
            // Input strings are marshalled as UTF-8; strings libvirt hands back stay raw pointers
            // because "char *" results must be freed by the caller and "const char *" ones must not.
            if (position == TypePosition.Argument && isConst) return "string?";
            if (position != TypePosition.Argument) return "nint";
        }
        return Resolve(baseName, stars, position, out unmappable, depth: 0);
    }

    private string? Resolve(string name, int stars, TypePosition position, out string? unmappable, int depth)
    {
        unmappable = null;
        if (depth > 8) { unmappable = $"typedef loop at {name}"; return null; }

        if (Primitives.TryGetValue(name, out string? prim))
        {
            if (prim == "void") return stars == 0 ? "void" : Pointer("nint", stars - 1);
            return Pointer(prim, stars);
        }
        if (_model.FuncTypes.Contains(name) || name.EndsWith("CallbackPtr", StringComparison.Ordinal))
        {
            // A function pointer inside a struct is just an address; as an argument it needs a
            // hand-written trampoline that keeps the managed target alive.
            if (position == TypePosition.Field) return Pointer("nint", stars);
            unmappable = $"callback type `{name}`";
            return null;
        }
        if (_model.Typedefs.TryGetValue(name, out string? target))
        {
            if (target == "enum") return Pointer("int", stars);
            int extra = target.Count(c => c == '*');
            string inner = Normalize(ConstRegex().Replace(target.Replace("*", " ", StringComparison.Ordinal), " "));
            return Resolve(inner, stars + extra, position, out unmappable, depth + 1);
        }
        if (_structsByName.TryGetValue(name, out var s))
        {
            if (s.Fields.Count == 0)
                return stars == 0 ? Fail(out unmappable, $"opaque struct `{name}` by value") : Pointer("nint", stars - 1);
            return Pointer(CanonicalStructName[name], stars);
        }
        if (_model.EnumMembersByType.ContainsKey(name)) return Pointer("int", stars);
        return Fail(out unmappable, $"unknown type `{name}`");
    }

    private static string? Fail(out string? unmappable, string why)
    {
        unmappable = why;
        return null;
    }

    private static string Pointer(string type, int stars) => type + new string('*', stars);

    /// <summary>"long long int" -> "long long", "unsigned" -> "unsigned int", whitespace collapsed.</summary>
    private static string Normalize(string t)
    {
        string s = string.Join(' ', t.Split(' ', StringSplitOptions.RemoveEmptyEntries));
        if (s == "unsigned") return "unsigned int";
        if (s.EndsWith(" int", StringComparison.Ordinal) && s.Contains("long", StringComparison.Ordinal)) s = s[..^4];
        if (s == "signed char") return "char";
        return s;
    }

    [GeneratedRegex(@"\bconst\b")]
    private static partial Regex ConstRegex();
}
