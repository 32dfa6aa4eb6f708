using System.Globalization;
using System.Reflection;
using System.Text.Json;
using GuideCopy.Migration.Agent;
using GuideCopy.Migration.Guide;
using GuideCopy.Migration.Host;

namespace GuideCopy.Kvm.Tests.Packaging;

/// <summary>
/// packaging/guidecopy.json holds every knob at its default, and docs/configuration.md
/// documents every knob with its default and environment name: both follow the options
/// classes, the knobs' one home.
/// </summary>
[TestFixture]
public sealed class SampleConfigTests
{
    /// <summary>Each configuration section, its options class, and the knobs it does not take from the file.</summary>
    private static readonly (string Section, object Defaults, string[] NotInFile)[] Sections =
    [
        ("Agent", new AgentOptions(), []),
        // Guide:Enabled is set by `migrate --guide on|off`, whatever the file says.
        ("Guide", new GuideOptions(), [nameof(GuideOptions.Enabled)]),
    ];

    private static IEnumerable<PropertyInfo> Knobs(object defaults) =>
        defaults.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance);

    private static readonly JsonSerializerOptions EnumsByName = new() { Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } };

    private static JsonElement Sample()
    {
        using var doc = JsonDocument.Parse(RepoFile.Read("packaging/guidecopy.json"));
        return doc.RootElement.Clone();
    }

    [Test]
    public void SampleHasEveryKnobAtItsDefault()
    {
        var sample = Sample();
        foreach (var (section, defaults, notInFile) in Sections)
        {
            var json = sample.GetProperty(section);
            var knobs = Knobs(defaults).Where(k => !notInFile.Contains(k.Name)).ToList();
            foreach (var knob in knobs)
            {
                Assert.That(json.TryGetProperty(knob.Name, out var value), Is.True, $"{section}:{knob.Name} missing from the sample");
                // Enums by name, as an operator writes them (the configuration binder takes names).
                string expected = JsonSerializer.Serialize(knob.GetValue(defaults), knob.PropertyType, EnumsByName);
                Assert.That(value.GetRawText(), Is.EqualTo(expected), $"{section}:{knob.Name}");
            }

            var names = json.EnumerateObject().Select(p => p.Name).ToList();
            Assert.That(names, Is.EquivalentTo(knobs.Select(k => k.Name)), $"the sample's {section} section has no knob its options class lacks");
        }
    }

    [Test]
    public void SampleHasTheControllerSecretFile()
    {
        Assert.That(Sample().GetProperty("Controller").GetProperty("SecretFile").GetString(), Is.EqualTo(new AgentOptions().SecretFile));
    }

    [Test]
    public void ConfigurationDocListsEveryKnobWithItsDefault()
    {
        var rows = RepoFile.Read("docs/configuration.md").Split('\n');
        foreach (var (section, defaults, _) in Sections)
        {
            foreach (var knob in Knobs(defaults))
            {
                string row = rows.FirstOrDefault(l => l.StartsWith($"| `{section}:{knob.Name}`", StringComparison.Ordinal))
                    ?? throw new AssertionException($"docs/configuration.md has no table row for {section}:{knob.Name}");
                // An empty string is shown as `""`, booleans as JSON writes them.
                string shown = knob.GetValue(defaults) switch
                {
                    string { Length: 0 } => "\"\"",
                    bool b => b ? "true" : "false",
                    var v => Convert.ToString(v, CultureInfo.InvariantCulture)!,
                };
                Assert.That(row, Does.Contain($"`{shown}`"), $"default of {section}:{knob.Name}");
                Assert.That(row, Does.Contain($"GUIDECOPY__{section.ToUpperInvariant()}__{knob.Name.ToUpperInvariant()}"), $"environment name of {section}:{knob.Name}");
            }
        }

        Assert.That(rows, Has.Some.StartsWith("| `Controller:SecretFile`"));
    }
}
