using GuideCopy.Transport;

namespace GuideCopy.Migration.Control;

/// <summary>
/// The secret every agent and controller of a site shares (Agent:SecretFile,
/// Controller:SecretFile): read once here for the agent, the controller and the lab, with
/// errors that say how to make one. The bytes are the file's, as the lanes' handshake reads
/// them (<see cref="Handshake.ReadSecretFile"/>).
/// </summary>
public static class SharedSecret
{
    public const int MinimumLength = 16;

    public static byte[] Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new AgentException($"secret file {path} does not exist: create it with 'head -c 32 /dev/urandom | base64 > {path}; chmod 600 {path}' and copy it to every host");
        }

        byte[] secret;
        try
        {
            secret = Handshake.ReadSecretFile(path);
        }
        catch (InvalidDataException)
        {
            secret = [];
        }

        if (secret.Length < MinimumLength)
        {
            throw new AgentException($"secret file {path} holds fewer than {MinimumLength} characters: use a longer secret");
        }

        return secret;
    }
}
