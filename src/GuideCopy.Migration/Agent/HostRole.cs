namespace GuideCopy.Migration.Agent;

/// <summary>What a host's part of one migration shares, source or destination: its settings, the secret, the migration's work directory.</summary>
public abstract class HostRole(AgentOptions options, byte[] secret, string migrationId, Action<string> log)
{
    protected AgentOptions Options { get; } = options;

    protected byte[] Secret { get; } = secret;

    protected string Id { get; } = migrationId;

    protected Action<string> Log { get; } = log;

    /// <summary>Sockets, the guide's console and disks of this migration; removed when it ends.</summary>
    protected string WorkDir => Path.Combine(Options.WorkDir, Id);

    protected void RemoveWorkDir()
    {
        try
        {
            Directory.Delete(WorkDir, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}
