using GuideCopy.Transport;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>
/// The commit question and the end-of-transfer notice on the control lane, against a real
/// PageServer on loopback: the source's answer is whatever its decision callback says, asked
/// twice it says the same, a page server of another session is refused, a wrong secret gets nothing.
/// </summary>
[NonParallelizable]
public class SourceControlTests
{
    private static readonly byte[] Secret = "source control test secret"u8.ToArray();

    private static LoopbackPageServer Server(string name)
    {
        string file = $"/dev/shm/gcmp-control-{name}-{Environment.ProcessId}";
        System.IO.File.WriteAllBytes(file, new byte[64 * 4096]);
        return new LoopbackPageServer(file, Secret);
    }

    [Test]
    public void TheSourcesDecisionIsTheAnswerAndStaysIt()
    {
        using var s = Server("decide");
        int asked = 0;
        bool committed = false;
        s.Server.CommitRequested = () =>
        {
            asked++;
            committed = true; // the first question takes the decision; later ones hear it again
            return committed;
        };
        Assert.That(SourceControl.AskCommit(s.Server.LocalEndPoint, Secret, LaneProtection.Sealed, s.Server.SessionId, 2000), Is.EqualTo(CommitDecision.Committed));
        Assert.That(SourceControl.AskCommit(s.Server.LocalEndPoint, Secret, LaneProtection.Sealed, s.Server.SessionId, 2000), Is.EqualTo(CommitDecision.Committed));
        Assert.That(asked, Is.EqualTo(2));
    }

    [Test]
    public void ARolledBackSourceSaysSo()
    {
        using var s = Server("rolledback");
        s.Server.CommitRequested = () => false;
        Assert.That(SourceControl.AskCommit(s.Server.LocalEndPoint, Secret, LaneProtection.Sealed, s.Server.SessionId, 2000), Is.EqualTo(CommitDecision.RolledBack));
    }

    [Test]
    public void DoneIsRecordedBeforeItIsAcknowledged()
    {
        using var s = Server("done");
        var order = new List<string>();
        s.Server.DoneReported = () => order.Add("recorded");
        s.Server.DoneAcknowledged = () => order.Add("acknowledged");
        SourceControl.ReportDone(s.Server.LocalEndPoint, Secret, LaneProtection.Sealed, s.Server.SessionId, 2000);
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (order.Count < 2 && DateTime.UtcNow < deadline) Thread.Sleep(10);
        Assert.That(order, Is.EqualTo(new[] { "recorded", "acknowledged" }));
    }

    [Test]
    public void APageServerOfAnotherSessionIsRefused()
    {
        using var s = Server("session");
        bool asked = false;
        s.Server.CommitRequested = () => asked = true;
        var e = Assert.Throws<ProtocolException>(() => SourceControl.AskCommit(s.Server.LocalEndPoint, Secret, LaneProtection.Sealed, s.Server.SessionId ^ 1, 2000));
        Assert.That(e!.Message, Does.Contain("not this migration's"));
        Assert.That(asked, Is.False, "the question must not reach another migration's source");
    }

    [Test]
    public void AWrongSecretGetsNoDecision()
    {
        using var s = Server("secret");
        bool asked = false;
        s.Server.CommitRequested = () => asked = true;
        Assert.Throws<AuthenticationFailedException>(() => SourceControl.AskCommit(s.Server.LocalEndPoint, "not the secret"u8, LaneProtection.Sealed, 0, 2000));
        Assert.That(asked, Is.False);
    }

    [Test]
    public void NoSourceIsAnIOExceptionToRetry()
    {
        Assert.Throws<IOException>(() => SourceControl.AskCommit(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 1), Secret, LaneProtection.Sealed, 0, 1000));
    }
}
