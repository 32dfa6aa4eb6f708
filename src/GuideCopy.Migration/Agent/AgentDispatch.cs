using System.Text.Json;
using System.Text.Json.Nodes;
using GuideCopy.Migration.Control;

namespace GuideCopy.Migration.Agent;

/// <summary>The agent's end of <see cref="AgentClient"/>: one request of <see cref="AgentOps"/> to the method of the role contract that answers it.</summary>
internal static class AgentDispatch
{
    public static async Task<object> AnswerAsync<TAgent>(TAgent agent, string op, JsonNode? args, CancellationToken ct)
        where TAgent : ISourceAgent, IDestinationAgent
    {
        switch (op)
        {
            case AgentOps.Facts: return await agent.FactsAsync(ct);
            case AgentOps.Lease: await agent.LeaseAsync(Args<MigrationRequest>(args), ct); return new Empty();
            case AgentOps.Jobs: return await agent.JobsAsync(ct);
            case AgentOps.Abort: return await agent.AbortAsync(Args<AbortRequest>(args), ct);
            case AgentOps.SourcePrepare: return await agent.PrepareSourceAsync(Args<DomainRequest>(args), ct);
            case AgentOps.SourceGuidePrepare: await agent.PrepareGuideAsync(Args<GuidePrepareRequest>(args), ct); return new Empty();
            case AgentOps.SourceArm: return await agent.ArmSourceAsync(Args<SourceArmRequest>(args), ct);
            case AgentOps.SourceSwitchover: return await agent.SwitchoverAsync(Args<SwitchoverRequest>(args), ct);
            case AgentOps.SourceWarmUp: return await agent.WarmUpAsync(Args<WarmUpRequest>(args), ct);
            case AgentOps.SourceFinish: return await agent.FinishSourceAsync(Args<MigrationRequest>(args), ct);
            case AgentOps.SourceAbort: await agent.AbortSourceAsync(Args<MigrationRequest>(args), ct); return new Empty();
            case AgentOps.DestinationCheck: return await agent.CheckDestinationAsync(Args<DestinationCheckRequest>(args), ct);
            case AgentOps.DestinationPrepare: return await agent.PrepareDestinationAsync(Args<DestinationPrepareRequest>(args), ct);
            case AgentOps.DestinationArm: return await agent.ArmDestinationAsync(Args<DestinationArmRequest>(args), ct);
            case AgentOps.DestinationLoad: return await agent.LoadAsync(Args<DestinationLoadRequest>(args), ct);
            case AgentOps.DestinationResume: return await agent.ResumeAsync(Args<MigrationRequest>(args), ct);
            case AgentOps.DestinationStatus: return await agent.StatusAsync(Args<MigrationRequest>(args), ct);
            case AgentOps.DestinationFinish: return await agent.FinishDestinationAsync(Args<DestinationFinishRequest>(args), ct);
            case AgentOps.DestinationAbort: await agent.AbortDestinationAsync(Args<AbortRequest>(args), ct); return new Empty();
            default: throw new AgentException($"unknown request '{op}'");
        }
    }

    private static T Args<T>(JsonNode? args) =>
        args.Deserialize<T>(ControlChannel.Json) ?? throw new AgentException($"request has no {typeof(T).Name}");
}
