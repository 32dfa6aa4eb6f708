using GuideCopy.Migration.Control;
namespace GuideCopy.Migration.Agent;

/// <summary>What the agent's list of live sides (<see cref="MigrationSides{T}"/>) does with a side of either role: roll it back, or dispose one it refused.</summary>
public interface IMigrationSide : IDisposable
{
    /// <summary>Undoes this host's part; refused (<see cref="AgentException"/>) once the side is past its commit point.</summary>
    void Abort(string why);
}
