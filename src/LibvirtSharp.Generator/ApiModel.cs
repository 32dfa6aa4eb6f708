using System.Xml.Linq;

namespace LibvirtSharp.Generator;

/// <summary>One C argument or return value as libvirt's API XML describes it.</summary>
public sealed record ApiArg(string Name, string CType);

/// <summary>A public function from the API XML; <see cref="Library"/> is the .so it lives in.</summary>
public sealed record ApiFunction(string Name, string File, string Library, string Version, string Summary,
    ApiArg Return, IReadOnlyList<ApiArg> Args);

public sealed record ApiEnumMember(string Name, string RawValue, bool HasBitShift, string Summary);

public sealed record ApiEnum(string Name, string File, IReadOnlyList<ApiEnumMember> Members);

public sealed record ApiField(string Name, string CType, IReadOnlyList<ApiField> UnionMembers);

/// <summary>A struct; <see cref="CTag"/> is the C type ("struct _virTypedParameter"), which several names may share.</summary>
public sealed record ApiStruct(string Name, string CTag, string File, IReadOnlyList<ApiField> Fields);

/// <summary>A #define: either a string (typed-parameter field names), a raw expression, or a function-like macro.</summary>
public sealed record ApiMacro(string Name, string File, string? StringValue, string? Raw, string? Params);

/// <summary>Everything the generator reads from libvirt-api.xml and libvirt-qemu-api.xml.</summary>
public sealed class ApiModel
{
    public List<ApiFunction> Functions { get; } = [];
    public Dictionary<string, List<ApiEnumMember>> EnumMembersByType { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, string> EnumFileByType { get; } = new(StringComparer.Ordinal);
    public List<ApiStruct> Structs { get; } = [];
    public Dictionary<string, string> Typedefs { get; } = new(StringComparer.Ordinal);
    public HashSet<string> FuncTypes { get; } = new(StringComparer.Ordinal);
    public List<ApiMacro> Macros { get; } = [];
    public string LibvirtVersion { get; private set; } = "unknown";

    public static ApiModel Load(string libvirtApiXml, string qemuApiXml)
    {
        var model = new ApiModel();
        model.Read(XDocument.Load(libvirtApiXml), "libvirt.so.0");
        model.Read(XDocument.Load(qemuApiXml), "libvirt-qemu.so.0");
        return model;
    }

    private void Read(XDocument doc, string library)
    {
        var symbols = doc.Root?.Element("symbols") ?? throw new InvalidDataException("API XML has no <symbols>");
        foreach (var e in symbols.Elements())
        {
            string name = Attr(e, "name");
            switch (e.Name.LocalName)
            {
                case "function":
                    Functions.Add(new ApiFunction(name, Attr(e, "file"), library, Attr(e, "version"),
                        FirstSentence((string?)e.Element("info") ?? ""),
                        new ApiArg("return", Attr(e.Element("return")!, "type")),
                        e.Elements("arg").Select(a => new ApiArg(Attr(a, "name"), Attr(a, "type"))).ToList()));
                    break;
                case "functype":
                    FuncTypes.Add(name);
                    break;
                case "enum":
                {
                    string type = (string?)e.Attribute("type") ?? "";
                    if (!EnumMembersByType.TryGetValue(type, out var list))
                        EnumMembersByType[type] = list = [];
                    EnumFileByType.TryAdd(type, Attr(e, "file"));
                    list.Add(new ApiEnumMember(name, Attr(e, "value"), e.Attribute("value_bitshift") is not null,
                        FirstSentence((string?)e.Attribute("info") ?? "")));
                    break;
                }
                case "typedef":
                    Typedefs[name] = Attr(e, "type");
                    break;
                case "struct":
                    Structs.Add(new ApiStruct(name, Attr(e, "type"), Attr(e, "file"),
                        e.Elements("field").Select(ReadField).ToList()));
                    break;
                case "macro":
                    var macro = new ApiMacro(name, Attr(e, "file"), (string?)e.Attribute("string"),
                        (string?)e.Attribute("raw"), (string?)e.Attribute("params"));
                    Macros.Add(macro);
                    if (name == "LIBVIR_VERSION_NUMBER" && long.TryParse(macro.Raw, out long v))
                        LibvirtVersion = $"{v / 1_000_000}.{v / 1000 % 1000}.{v % 1000}";
                    break;
            }
        }
    }

    private static ApiField ReadField(XElement f) =>
        new(Attr(f, "name"), Attr(f, "type"),
            f.Element("union")?.Elements("field").Select(ReadField).ToList() ?? []);

    private static string Attr(XElement e, string name) =>
        (string?)e.Attribute(name) ?? throw new InvalidDataException($"<{e.Name} name='{e.Attribute("name")?.Value}'> lacks '{name}'");

    /// <summary>The first sentence of an info text, on one line: enough for a doc comment.</summary>
    private static string FirstSentence(string info)
    {
        string flat = string.Join(' ', info.Split((char[])[' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries));
        int dot = flat.IndexOf(". ", StringComparison.Ordinal);
        if (dot >= 0) flat = flat[..(dot + 1)];
        return flat.Length > 200 ? flat[..200] + "..." : flat;
    }
}
