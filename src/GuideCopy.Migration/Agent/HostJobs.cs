using System.Text.Json;
using System.Text.Json.Nodes;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Journal;

namespace GuideCopy.Migration.Agent;

/// <summary>What this host knows of its migrations for 'guidecopy jobs' and late questions: the journal, with the live destinations' counters.</summary>
internal static class HostJobs
{
    public static List<JobInfo> List(MigrationJournal journal, MigrationSides<DestinationSide> destinations)
    {
        var jobs = new List<JobInfo>();
        foreach (var e in journal.ReadAll())
        {
            DestinationStatus? live = null;
            string? guide = null;
            if (e.Role == MigrationRole.Destination && destinations.TryGet(e.Id, out var d))
            {
                try
                {
                    live = d.Status();
                }
                catch (AgentException)
                {
                }
            }
            else if (e.Role == MigrationRole.Destination)
            {
                live = e.Result?.Deserialize<DestinationStatus>(ControlChannel.Json);
            }

            if (e.Role == MigrationRole.Source && e.Result?["guide"] is JsonObject g)
            {
                guide = g["stopReason"]?.GetValue<string>();
            }

            jobs.Add(new JobInfo(e.Id, e.Role.ToString(), e.Domain, e.Stage.ToString(), e.StartedAt, e.UpdatedAt, e.Note,
                live?.Pages.DonePages ?? 0, live?.Pages.PageCount ?? 0, live?.Pages.Faults ?? 0, live?.Pages.BytesReceived ?? 0, live?.Pages.Reconnects ?? 0,
                Math.Round((live?.Pages.ElapsedMs ?? 0) / 1000, 1), guide, e.Result));
        }

        return jobs;
    }

    /// <summary>The status of a migration this agent no longer runs (an earlier agent's, or ended), from the journal.</summary>
    public static DestinationStatus KeptStatus(MigrationJournal journal, string id)
    {
        var e = journal.Read(id) is { Role: MigrationRole.Destination } d ? d : throw new AgentException($"no migration {id} on this host");
        var kept = e.Result?.Deserialize<DestinationStatus>(ControlChannel.Json)
                   ?? new DestinationStatus(false, "", default);
        return kept with { Done = e.Stage == MigrationStage.Completed, Stage = e.Stage.ToString(), Note = e.Note, ResumedAtUnixMs = e.ResumedAtUnixMs };
    }
}
