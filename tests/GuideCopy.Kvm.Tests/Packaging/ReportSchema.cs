using System.Text.Json;
using Json.Schema;

namespace GuideCopy.Kvm.Tests.Packaging;

/// <summary>docs/report-schema.json, loaded once, and a readable list of what a document breaks.</summary>
internal static class ReportSchema
{
    private static readonly Lazy<JsonSchema> Schema = new(() =>
        JsonSchema.FromText(RepoFile.Read("docs/report-schema.json")));

    /// <summary>Every failed keyword with its place in the document; empty when the document is valid.</summary>
    public static IReadOnlyList<string> Problems(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var results = Schema.Value.Evaluate(doc.RootElement, new EvaluationOptions
        {
            OutputFormat = OutputFormat.List,
            RequireFormatValidation = true,
        });
        if (results.IsValid)
        {
            return [];
        }

        var problems = new List<string>();
        foreach (var r in (results.Details ?? []).Prepend(results))
        {
            foreach (var (keyword, message) in r.Errors ?? [])
            {
                problems.Add($"{r.InstanceLocation} ({r.EvaluationPath}/{keyword}): {message}");
            }
        }

        return problems.Count > 0 ? problems : ["invalid, without details"];
    }
}
