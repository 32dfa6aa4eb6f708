using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using GuideCopy.Migration.Control;

namespace GuideCopy.Unit.Tests.Migration;

/// <summary>
/// An agent of another build (another control protocol) is refused at the handshake with the fix,
/// before any request: its messages would otherwise deserialize with their changed fields empty.
/// The peer here is a real socket speaking the agent's hello, as an older agent would.
/// </summary>
[TestFixture]
public sealed class ControlProtocolVersionTests
{
    [TestCase(ControlChannel.ProtocolVersion - 1)]
    [TestCase(ControlChannel.ProtocolVersion + 1)]
    public async Task AnAgentOfAnotherVersionIsRefusedWithTheFix(int peerVersion)
    {
        string path = Path.Combine(Path.GetTempPath(), $"gc-version-{Guid.NewGuid():N}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        try
        {
            var peer = Task.Run(async () =>
            {
                using var s = await listener.AcceptAsync();
                string hello = $$"""{"hello":"guidecopy-agent","version":{{peerVersion}},"nonce":"{{Convert.ToBase64String(new byte[32])}}"}""";
                byte[] body = Encoding.UTF8.GetBytes(hello);
                byte[] frame = new byte[4 + body.Length];
                BinaryPrimitives.WriteInt32LittleEndian(frame, body.Length);
                body.CopyTo(frame, 4);
                await s.SendAsync(frame);
                // The controller must close without sending its proof.
                byte[] any = new byte[1];
                return await s.ReceiveAsync(any);
            });

            var e = Assert.ThrowsAsync<AgentException>(async () =>
                await ControlChannel.ConnectAsync(AgentEndpoint.Parse("unix:" + path), new byte[32], CancellationToken.None));
            Assert.That(e!.Message, Does.Contain($"speaks control protocol {peerVersion}"));
            Assert.That(e.Message, Does.Contain("install the same guidecopy version on both"));
            Assert.That(await peer.WaitAsync(TimeSpan.FromSeconds(10)), Is.EqualTo(0), "nothing sent to an agent of another version");
        }
        finally
        {
            File.Delete(path);
        }
    }
}
