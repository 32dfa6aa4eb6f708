using System.Reflection;
using System.Text.Json;
using GuideCopy.Migration.Agent;

namespace GuideCopy.Kvm.Tests.Packaging;

/// <summary>
/// packaging/guidecopy.json holds every knob at its default, and docs/configuration.md
/// documents every knob: both follow AgentOptions, the knobs' one home.
/// </summary>
[TestFixture]
public sealed class SampleConfigTests
{
    private static readonly PropertyInfo[] Knobs = typeof(AgentOptions).GetProperties(BindingFlags.Public | BindingFlags.Instance);

    private static JsonElement Sample()
    {
        using var doc = JsonDocument.Parse(RepoFile.Read("packaging/guidecopy.json"));
        return doc.RootElement.Clone();
    }

    [Test]
    public void SampleHasEveryAgentKnobAtItsDefault()
    {
        var agent = Sample().GetProperty("Agent");
        var defaults = new AgentOptions();
        foreach (var knob in Knobs)
        {
            Assert.That(agent.TryGetProperty(knob.Name, out var value), Is.True, $"Agent:{knob.Name} missing from the sample");
            string expected = JsonSerializer.Serialize(knob.GetValue(defaults), knob.PropertyType);
            Assert.That(value.GetRawText(), Is.EqualTo(expected), $"Agent:{knob.Name}");
        }

        var names = agent.EnumerateObject().Select(p => p.Name).ToList();
        Assert.That(names, Is.EquivalentTo(Knobs.Select(k => k.Name)), "the sample has no knob AgentOptions lacks");
    }

    [Test]
    public void SampleHasTheControllerSecretFile()
    {
        Assert.That(Sample().GetProperty("Controller").GetProperty("SecretFile").GetString(), Is.EqualTo(new AgentOptions().SecretFile));
    }

    [Test]
    public void ConfigurationDocListsEveryKnobWithItsDefault()
    {
        string doc = RepoFile.Read("docs/configuration.md");
        var defaults = new AgentOptions();
        foreach (var knob in Knobs)
        {
            string row = doc.Split('\n').FirstOrDefault(l => l.StartsWith($"| `Agent:{knob.Name}`", StringComparison.Ordinal))
                ?? throw new AssertionException($"docs/configuration.md has no table row for Agent:{knob.Name}");
            // An empty string is shown as `""`.
            string shown = knob.GetValue(defaults) is string s ? (s.Length == 0 ? "\"\"" : s) : Convert.ToString(knob.GetValue(defaults), System.Globalization.CultureInfo.InvariantCulture)!;
            Assert.That(row, Does.Contain($"`{shown}`"), $"default of Agent:{knob.Name}");
            Assert.That(row, Does.Contain($"GUIDECOPY__AGENT__{knob.Name.ToUpperInvariant()}"), $"env name of Agent:{knob.Name}");
        }

        Assert.That(doc, Does.Contain("| `Controller:SecretFile`"));
    }
}
