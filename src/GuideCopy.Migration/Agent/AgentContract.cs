using GuideCopy.Migration.Control;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// The request names of the control channel: the one list the agent's dispatch and the client
/// proxy (<see cref="AgentClient"/>) both use. One name per method of the role interfaces below.
/// </summary>
public static class AgentOps
{
    public const string Facts = "facts";
    public const string Lease = "lease";
    public const string Jobs = "jobs";
    public const string Abort = "abort";
    public const string SourcePrepare = "source.prepare";
    public const string SourceGuidePrepare = "source.guide.prepare";
    public const string SourceArm = "source.arm";
    public const string SourceSwitchover = "source.switchover";
    public const string SourceWarmUp = "source.warmup";
    public const string SourceFinish = "source.finish";
    public const string SourceAbort = "source.abort";
    public const string DestinationCheck = "dest.check";
    public const string DestinationPrepare = "dest.prepare";
    public const string DestinationArm = "dest.arm";
    public const string DestinationLoad = "dest.load";
    public const string DestinationResume = "dest.resume";
    public const string DestinationStatus = "dest.status";
    public const string DestinationFinish = "dest.finish";
    public const string DestinationAbort = "dest.abort";
}

/// <summary>What every agent answers, whatever its role in a migration.</summary>
public interface IHostAgent
{
    Task<HostFacts> FactsAsync(CancellationToken ct);

    /// <summary>Renews the controller's lease on a migration (before its commit point the agent rolls back without it).</summary>
    Task LeaseAsync(MigrationRequest req, CancellationToken ct);

    Task<JobsResult> JobsAsync(CancellationToken ct);

    /// <summary>Undoes this host's part if it is before the commit point here; says why not otherwise.</summary>
    Task<AbortResult> AbortAsync(AbortRequest req, CancellationToken ct);
}

/// <summary>The source host's steps (<see cref="SourceSide"/>).</summary>
public interface ISourceAgent : IHostAgent
{
    Task<SourcePrepareResult> PrepareSourceAsync(DomainRequest req, CancellationToken ct);

    Task PrepareGuideAsync(GuidePrepareRequest req, CancellationToken ct);

    Task<SourceArmResult> ArmSourceAsync(SourceArmRequest req, CancellationToken ct);

    Task<SwitchoverResult> SwitchoverAsync(SwitchoverRequest req, CancellationToken ct);

    Task<WarmUpResult> WarmUpAsync(WarmUpRequest req, CancellationToken ct);

    Task<SourceFinishResult> FinishSourceAsync(MigrationRequest req, CancellationToken ct);

    /// <summary>Takes the decision "rolled back" and resumes the source; refused once committed.</summary>
    Task AbortSourceAsync(MigrationRequest req, CancellationToken ct);
}

/// <summary>The destination host's steps (<see cref="DestinationSide"/>).</summary>
public interface IDestinationAgent : IHostAgent
{
    Task<DestinationCheckResult> CheckDestinationAsync(DestinationCheckRequest req, CancellationToken ct);

    Task<DestinationStartResult> PrepareDestinationAsync(DestinationPrepareRequest req, CancellationToken ct);

    Task<DestinationArmResult> ArmDestinationAsync(DestinationArmRequest req, CancellationToken ct);

    Task<DestinationStartResult> LoadAsync(DestinationLoadRequest req, CancellationToken ct);

    /// <summary>The commit point; idempotent (asked again, it answers the same).</summary>
    Task<ResumeResult> ResumeAsync(MigrationRequest req, CancellationToken ct);

    Task<DestinationStatus> StatusAsync(MigrationRequest req, CancellationToken ct);

    Task<DestinationStatus> FinishDestinationAsync(DestinationFinishRequest req, CancellationToken ct);

    Task AbortDestinationAsync(AbortRequest req, CancellationToken ct);
}

/// <summary>
/// The controller's proxy of an agent over one <see cref="ControlChannel"/>: each method is one
/// request (<see cref="AgentOps"/>) and its typed reply. Failures arrive as <see cref="AgentException"/>
/// (<see cref="AgentException.ConnectionLost"/> when the agent could not be heard).
/// </summary>
public sealed class AgentClient(ControlChannel channel) : ISourceAgent, IDestinationAgent, IAsyncDisposable
{
    public static async Task<AgentClient> ConnectAsync(AgentEndpoint endpoint, byte[] secret, CancellationToken ct) =>
        new(await ControlChannel.ConnectAsync(endpoint, secret, ct));

    public Task<HostFacts> FactsAsync(CancellationToken ct) => channel.CallAsync<HostFacts>(AgentOps.Facts, new Empty(), ct);

    public Task LeaseAsync(MigrationRequest req, CancellationToken ct) => channel.CallAsync<Empty>(AgentOps.Lease, req, ct);

    public Task<JobsResult> JobsAsync(CancellationToken ct) => channel.CallAsync<JobsResult>(AgentOps.Jobs, new Empty(), ct);

    public Task<AbortResult> AbortAsync(AbortRequest req, CancellationToken ct) => channel.CallAsync<AbortResult>(AgentOps.Abort, req, ct);

    public Task<SourcePrepareResult> PrepareSourceAsync(DomainRequest req, CancellationToken ct) =>
        channel.CallAsync<SourcePrepareResult>(AgentOps.SourcePrepare, req, ct);

    public Task PrepareGuideAsync(GuidePrepareRequest req, CancellationToken ct) => channel.CallAsync<Empty>(AgentOps.SourceGuidePrepare, req, ct);

    public Task<SourceArmResult> ArmSourceAsync(SourceArmRequest req, CancellationToken ct) =>
        channel.CallAsync<SourceArmResult>(AgentOps.SourceArm, req, ct);

    public Task<SwitchoverResult> SwitchoverAsync(SwitchoverRequest req, CancellationToken ct) =>
        channel.CallAsync<SwitchoverResult>(AgentOps.SourceSwitchover, req, ct);

    public Task<WarmUpResult> WarmUpAsync(WarmUpRequest req, CancellationToken ct) =>
        channel.CallAsync<WarmUpResult>(AgentOps.SourceWarmUp, req, ct);

    public Task<SourceFinishResult> FinishSourceAsync(MigrationRequest req, CancellationToken ct) =>
        channel.CallAsync<SourceFinishResult>(AgentOps.SourceFinish, req, ct);

    public Task AbortSourceAsync(MigrationRequest req, CancellationToken ct) => channel.CallAsync<Empty>(AgentOps.SourceAbort, req, ct);

    public Task<DestinationCheckResult> CheckDestinationAsync(DestinationCheckRequest req, CancellationToken ct) =>
        channel.CallAsync<DestinationCheckResult>(AgentOps.DestinationCheck, req, ct);

    public Task<DestinationStartResult> PrepareDestinationAsync(DestinationPrepareRequest req, CancellationToken ct) =>
        channel.CallAsync<DestinationStartResult>(AgentOps.DestinationPrepare, req, ct);

    public Task<DestinationArmResult> ArmDestinationAsync(DestinationArmRequest req, CancellationToken ct) =>
        channel.CallAsync<DestinationArmResult>(AgentOps.DestinationArm, req, ct);

    public Task<DestinationStartResult> LoadAsync(DestinationLoadRequest req, CancellationToken ct) =>
        channel.CallAsync<DestinationStartResult>(AgentOps.DestinationLoad, req, ct);

    public Task<ResumeResult> ResumeAsync(MigrationRequest req, CancellationToken ct) =>
        channel.CallAsync<ResumeResult>(AgentOps.DestinationResume, req, ct);

    public Task<DestinationStatus> StatusAsync(MigrationRequest req, CancellationToken ct) =>
        channel.CallAsync<DestinationStatus>(AgentOps.DestinationStatus, req, ct);

    public Task<DestinationStatus> FinishDestinationAsync(DestinationFinishRequest req, CancellationToken ct) =>
        channel.CallAsync<DestinationStatus>(AgentOps.DestinationFinish, req, ct);

    public Task AbortDestinationAsync(AbortRequest req, CancellationToken ct) => channel.CallAsync<Empty>(AgentOps.DestinationAbort, req, ct);

    public ValueTask DisposeAsync() => channel.DisposeAsync();
}

/// <summary>How the controller reaches the two agents of a migration (the lab and real hosts: <see cref="AgentClient"/>; unit tests: fakes).</summary>
public interface IAgentConnector
{
    Task<ISourceAgent> ConnectSourceAsync(CancellationToken ct);

    Task<IDestinationAgent> ConnectDestinationAsync(CancellationToken ct);
}

/// <summary>The real connector: authenticated control channels to the two endpoints.</summary>
public sealed class ControlChannelConnector(AgentEndpoint source, AgentEndpoint destination, byte[] secret) : IAgentConnector
{
    public async Task<ISourceAgent> ConnectSourceAsync(CancellationToken ct) => await AgentClient.ConnectAsync(source, secret, ct);

    public async Task<IDestinationAgent> ConnectDestinationAsync(CancellationToken ct) => await AgentClient.ConnectAsync(destination, secret, ct);
}
