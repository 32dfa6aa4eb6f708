using System.Reflection;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Guide;
using GuideCopy.Migration.Host;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.CommandLine;
using Microsoft.Extensions.Configuration.EnvironmentVariables;
using Microsoft.Extensions.Configuration.Json;

namespace GuideCopy.Cli.Configuration;

/// <summary>
/// The one home of every knob: /etc/guidecopy/guidecopy.json (or $GUIDECOPY_CONFIG / --config),
/// then GUIDECOPY__SECTION__KEY environment variables, then --set Section:Key=value flags; later
/// sources win. Defaults and units live on the options classes (AgentOptions, ControllerOptions,
/// GuideOptions); docs/configuration.md lists them all. A file named on purpose must exist, and a
/// key no options class has is an error naming the nearest one: a typo must not silently leave
/// a knob at its default.
/// </summary>
internal static class GuideCopyConfiguration
{
    public const string DefaultFile = "/etc/guidecopy/guidecopy.json";

    /// <summary>Each section and the options class bound from it.</summary>
    public static readonly IReadOnlyDictionary<string, Type> Sections = new Dictionary<string, Type>(StringComparer.OrdinalIgnoreCase)
    {
        ["Agent"] = typeof(AgentOptions),
        ["Controller"] = typeof(ControllerOptions),
        ["Guide"] = typeof(GuideOptions),
    };

    /// <exception cref="ConfigurationException">a named file is missing or unreadable, a --set is malformed, or a key is unknown.</exception>
    public static IConfiguration Build(string? file, IEnumerable<string> overrides)
    {
        string? named = file ?? Environment.GetEnvironmentVariable("GUIDECOPY_CONFIG");
        string path = named ?? DefaultFile;
        if (named is not null && !File.Exists(path))
        {
            throw new ConfigurationException($"configuration file '{path}' does not exist ({(file is not null ? "--config" : "$GUIDECOPY_CONFIG")}); " +
                                             $"packaging/guidecopy.json is a sample with every key at its default");
        }

        var sets = new List<string>();
        foreach (var o in overrides)
        {
            if (o.IndexOf('=') <= 0)
            {
                throw new ConfigurationException($"--set '{o}' is not Section:Key=value (e.g. --set Agent:PageListen=10.55.0.10:7171)");
            }

            sets.Add(o);
        }

        IConfigurationRoot config;
        try
        {
            config = new ConfigurationBuilder()
                .AddJsonFile(Path.GetFullPath(path), optional: named is null, reloadOnChange: false)
                .AddEnvironmentVariables("GUIDECOPY__")
                .AddCommandLine([.. sets])
                .Build();
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or IOException or UnauthorizedAccessException)
        {
            throw new ConfigurationException($"configuration file '{path}' cannot be read: {e.Message}");
        }

        foreach (var provider in config.Providers)
        {
            foreach (string key in LeafKeys(provider, null))
            {
                if (UnknownKey(key) is { } nearest)
                {
                    throw new ConfigurationException($"unknown setting '{key}' in {Origin(provider, path)}: {nearest}");
                }
            }
        }

        return config;
    }

    public static T Section<T>(this IConfiguration config, string name)
        where T : new()
    {
        var options = new T();
        try
        {
            config.GetSection(name).Bind(options);
        }
        catch (InvalidOperationException e)
        {
            // Bind's message names the key, the value and the type it could not convert to.
            throw new ConfigurationException($"{e.Message} (docs/configuration.md gives each key's form)");
        }

        return options;
    }

    /// <summary>Null for a known Section:Key; otherwise what to write instead.</summary>
    internal static string? UnknownKey(string key)
    {
        string[] parts = key.Split(':');
        var all = Sections.SelectMany(s => Knobs(s.Value).Select(k => $"{s.Key}:{k}")).ToList();
        if (parts.Length == 2 && Sections.TryGetValue(parts[0], out var type)
            && Knobs(type).Contains(parts[1], StringComparer.OrdinalIgnoreCase))
        {
            return null;
        }

        string nearest = all.MinBy(k => EditDistance(k.ToLowerInvariant(), key.ToLowerInvariant()))!;
        return $"did you mean '{nearest}'? (docs/configuration.md lists every key)";
    }

    private static IEnumerable<string> Knobs(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite).Select(p => p.Name);

    private static IEnumerable<string> LeafKeys(IConfigurationProvider provider, string? parent)
    {
        foreach (string child in provider.GetChildKeys([], parent).Distinct(StringComparer.OrdinalIgnoreCase))
        {
            string key = parent is null ? child : $"{parent}:{child}";
            bool hasChildren = provider.GetChildKeys([], key).Any();
            if (!hasChildren)
            {
                yield return key;
            }
            else
            {
                foreach (string leaf in LeafKeys(provider, key))
                {
                    yield return leaf;
                }
            }
        }
    }

    private static string Origin(IConfigurationProvider provider, string path) => provider switch
    {
        JsonConfigurationProvider => path,
        EnvironmentVariablesConfigurationProvider => "the environment (GUIDECOPY__SECTION__KEY)",
        CommandLineConfigurationProvider => "--set",
        _ => provider.ToString() ?? "configuration",
    };

    /// <summary>Levenshtein distance, for "did you mean" (keys are a few dozen characters).</summary>
    private static int EditDistance(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++)
        {
            prev[j] = j;
        }

        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }

            (prev, cur) = (cur, prev);
        }

        return prev[b.Length];
    }
}

/// <summary>A configuration the user must fix: a missing file, a malformed --set, an unknown key or a bad value.</summary>
internal sealed class ConfigurationException(string message) : Exception(message);
