using Microsoft.Extensions.Configuration;

namespace GuideCopy.Cli.Configuration;

/// <summary>
/// The one home of every knob: /etc/guidecopy/guidecopy.json (or $GUIDECOPY_CONFIG / --config),
/// then GUIDECOPY__SECTION__KEY environment variables, then --set Section:Key=value flags; later
/// sources win. Defaults and units live on the options classes (AgentOptions, ControllerOptions);
/// docs/configuration.md lists them all.
/// </summary>
internal static class GuideCopyConfiguration
{
    public const string DefaultFile = "/etc/guidecopy/guidecopy.json";

    public static IConfiguration Build(string? file, IEnumerable<string> overrides)
    {
        file ??= Environment.GetEnvironmentVariable("GUIDECOPY_CONFIG") ?? DefaultFile;
        var settings = new Dictionary<string, string?>();
        foreach (var o in overrides)
        {
            int eq = o.IndexOf('=');
            if (eq <= 0)
            {
                throw new ArgumentException($"--set '{o}' is not Section:Key=value");
            }

            settings[o[..eq]] = o[(eq + 1)..];
        }

        return new ConfigurationBuilder()
            .AddJsonFile(file, optional: true, reloadOnChange: false)
            .AddEnvironmentVariables("GUIDECOPY__")
            .AddInMemoryCollection(settings)
            .Build();
    }

    public static T Section<T>(this IConfiguration config, string name)
        where T : new()
    {
        var options = new T();
        config.GetSection(name).Bind(options);
        return options;
    }
}
