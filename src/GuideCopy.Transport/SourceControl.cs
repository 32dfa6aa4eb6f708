using System.Net;
using System.Net.Sockets;

namespace GuideCopy.Transport;

/// <summary>
/// The two questions a destination asks its source outside the page flow, each on a short
/// control lane of its own (authenticated like the others, never queued behind pages):
/// the commit decision before it resumes, and "every page is in" at the end. Either may be
/// asked again after a lost answer; the source's answers are idempotent.
/// </summary>
public static class SourceControl
{
    /// <summary>Asks whether the destination may resume. Throws IOException when no answer came (ask again).</summary>
    public static CommitDecision AskCommit(EndPoint source, ReadOnlySpan<byte> key, LaneProtection protection, ulong expectedSession, int timeoutMs)
    {
        using var lane = Connect(source, key, protection, expectedSession, timeoutMs);
        lane.Send(FrameType.Commit, default);
        WaitFor(lane, FrameType.CommitDecision);
        return FrameCodec.ReadCommitDecision(lane.Payload);
    }

    /// <summary>The commit question on a control lane already open (<see cref="OpenLane"/>); the answer's frame skips heartbeats.</summary>
    public static CommitDecision AskCommit(FrameConnection lane)
    {
        lane.Send(FrameType.Commit, default);
        WaitFor(lane, FrameType.CommitDecision);
        return FrameCodec.ReadCommitDecision(lane.Payload);
    }

    /// <summary>A control lane, connected and authenticated, kept for a question asked later (heartbeat it while idle).</summary>
    public static FrameConnection OpenLane(EndPoint source, ReadOnlySpan<byte> key, LaneProtection protection, ulong expectedSession, int timeoutMs) =>
        Connect(source, key, protection, expectedSession, timeoutMs);

    /// <summary>
    /// Tells the source the destination's copy is destroyed and never ran (its QEMU never got the
    /// whole device state): true when the source runs its own again, false when it refused (it
    /// had completed). Throws IOException when no answer came (ask again).
    /// </summary>
    public static bool Abandon(EndPoint source, ReadOnlySpan<byte> key, LaneProtection protection, ulong expectedSession, int timeoutMs)
    {
        using var lane = Connect(source, key, protection, expectedSession, timeoutMs);
        lane.Send(FrameType.Abandon, default);
        WaitFor(lane, FrameType.AbandonAck);
        return lane.Payload.Length == 1 ? lane.Payload[0] == 1 : throw new ProtocolException($"an AbandonAck of {lane.Payload.Length} bytes");
    }

    /// <summary>Tells the source every page is in; returns once it recorded that. Throws IOException otherwise.</summary>
    public static void ReportDone(EndPoint source, ReadOnlySpan<byte> key, LaneProtection protection, ulong expectedSession, int timeoutMs)
    {
        using var lane = Connect(source, key, protection, expectedSession, timeoutMs);
        lane.Send(FrameType.Done, default);
        WaitFor(lane, FrameType.DoneAck);
    }

    private static void WaitFor(FrameConnection lane, FrameType expected)
    {
        FrameType t;
        while ((t = lane.ReadFrame()) == FrameType.Heartbeat) { }
        if (t != expected) throw new ProtocolException($"expected {expected}, got {t}");
    }

    private static FrameConnection Connect(EndPoint source, ReadOnlySpan<byte> key, LaneProtection protection, ulong expectedSession, int timeoutMs)
    {
        var socket = new Socket(source.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        FrameConnection? lane = null;
        try
        {
            LaneSocket.Tune(socket, Lane.Control);
            using (new Timer(_ => socket.Dispose(), null, timeoutMs, Timeout.Infinite))
                socket.Connect(source);
            lane = new FrameConnection(socket, timeoutMs);
            var session = Handshake.Client(lane, Lane.Control, key, protection);
            if (expectedSession != 0 && session.SessionId != expectedSession)
                throw new ProtocolException($"the page server at {source} serves session {session.SessionId:x16}, not this migration's {expectedSession:x16}");
            return lane;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            lane?.Dispose();
            socket.Dispose();
            throw new IOException($"source {source} unreachable: {(e as SocketException)?.SocketErrorCode.ToString() ?? "timed out"}", e);
        }
        catch
        {
            lane?.Dispose();
            socket.Dispose();
            throw;
        }
    }
}
