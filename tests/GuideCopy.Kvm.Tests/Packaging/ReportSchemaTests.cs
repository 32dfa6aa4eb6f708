using System.Text.Json;
using GuideCopy.Migration.Report;

namespace GuideCopy.Kvm.Tests.Packaging;

/// <summary>
/// docs/report-schema.json is the contract for ops scripts: it must accept what the report
/// serializes now (every field filled in), and must reject what the report never produces.
/// The real migration against it is in <see cref="MigrationJsonTests"/>.
/// </summary>
[TestFixture]
public sealed class ReportSchemaTests
{
    /// <summary>Every property set, so a field added to MigrationReport without the schema fails here (additionalProperties: false).</summary>
    internal static MigrationReport FullReport() => new()
    {
        Mode = "guide",
        Domain = "d1",
        Source = "qemu+tcp://10.55.0.10/system",
        Destination = "qemu+tcp://10.55.0.11/system",
        Outcome = MigrationOutcome.FailedAfterCommit,
        Error = "agent lost",
        StartedAt = DateTimeOffset.UtcNow,
        TotalSeconds = 12.5,
        DowntimeMs = 41,
        BytesOnWire = 123_456_789,
        DeviceStateBytes = 512_000,
        Pages = new PageCounts(131072, 120, 5000, 300, 30000, 85000, 2, Warm: 10000, WarmStale: 700),
        DestinationFaults = new FaultStats(150, 120, 0.4, 3.1, 7.9, 80.2),
        Compression = new CompressionReport("auto", 400_000_000, 200_000_000, 2.0, 380),
        Guest = new GuestThroughput("kv", 1000, 800, 990, 0.8, 0.99, true, 42, "GCHB seq=42 t_ms=42000 wl=kv work=1 rate=1 check=OK extra=x",
            LostWorkSeconds: 4.2, LostWorkWindowSeconds: 60, LongestPauseSeconds: 1.8),
        Guide = new GuideReport(true, 5000, 4800, 0.97, 3, 12, 150, 8.5, 2.1, "idle (5 s)"),
        WarmUp = new GuideCopy.Migration.Agent.WarmUpResult("not asked", 10700, 20, 44_000_000, 300, 6, 4100, 12, "every page the guest did not write within a round was sent"),
        PhasesMs = new Dictionary<string, double> { ["preflight"] = 120.5, ["deviceStateSave"] = 30 },
        Details = new Dictionary<string, JsonElement> { ["enteredPostCopy"] = JsonSerializer.SerializeToElement(true) },
    };

    [Test]
    public void EveryFieldOfTheReportIsInTheSchema()
    {
        var json = FullReport().ToJson();
        Assert.That(ReportSchema.Problems(json), Is.Empty, json);
    }

    [Test]
    public void EveryOutcomeAndModeValidates()
    {
        foreach (var outcome in Enum.GetValues<MigrationOutcome>())
        {
            foreach (var mode in new[] { "guide", "precopy", "postcopy", "postcopy-at-once" })
            {
                var json = (FullReport() with { Outcome = outcome, Mode = mode }).ToJson();
                Assert.That(ReportSchema.Problems(json), Is.Empty, $"{outcome} {mode}");
            }
        }
    }

    [Test]
    public void MinimalReportOfARefusalValidates()
    {
        // What a refusal before any measurement looks like: nulls are left out, not written.
        var report = new MigrationReport { Mode = "guide", Domain = "d", Source = "a", Destination = "b", Outcome = MigrationOutcome.Refused, Error = "x" };
        var json = report.ToJson();
        Assert.That(json, Does.Not.Contain("null"));
        Assert.That(ReportSchema.Problems(json), Is.Empty, json);
    }

    [TestCase("\"outcome\": \"Completed\"", "\"outcome\": \"Done\"")]
    [TestCase("\"schema\": 1", "\"schema\": 2")]
    [TestCase("\"totalSeconds\": 12.5", "\"totalSeconds\": \"12.5\"")]
    [TestCase("\"mode\": \"guide\"", "\"mode\": \"teleport\"")]
    [TestCase("\"domain\": \"d1\"", "\"domain\": \"d1\", \"surprise\": 1")]
    [TestCase("\"demand\": 120", "\"demand\": -1")]
    public void SchemaRejectsWhatTheReportNeverWrites(string good, string bad)
    {
        var json = (FullReport() with { Outcome = MigrationOutcome.Completed }).ToJson();
        Assert.That(json, Does.Contain(good), "the test's premise");
        Assert.That(ReportSchema.Problems(json.Replace(good, bad)), Is.Not.Empty);
    }

    [Test]
    public void StartedAtIsADateTimeTheSchemaChecks()
    {
        var json = FullReport().ToJson();
        var broken = System.Text.RegularExpressions.Regex.Replace(json, "\"startedAt\": \"[^\"]*\"", "\"startedAt\": \"yesterday\"");
        Assert.That(ReportSchema.Problems(broken), Is.Not.Empty);
    }
}
