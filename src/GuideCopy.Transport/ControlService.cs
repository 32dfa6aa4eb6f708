namespace GuideCopy.Transport;

/// <summary>
/// The control lane: the destination asks for the commit decision before it resumes, gives its
/// copy up when it never ran (abandon), and reports that it has every page. Answered like a fault (the VM is paused meanwhile).
/// </summary>
internal sealed class ControlService(ServedRam served, DeviceStateRelay deviceState)
{
    /// <inheritdoc cref="PageServer.CommitRequested"/>
    public Func<bool>? CommitRequested { get; set; }

    /// <inheritdoc cref="PageServer.AbandonRequested"/>
    public Func<bool>? AbandonRequested { get; set; }

    /// <inheritdoc cref="PageServer.AbandonAcknowledged"/>
    public Action? AbandonAcknowledged { get; set; }

    /// <inheritdoc cref="PageServer.DoneReported"/>
    public Action? DoneReported { get; set; }

    /// <inheritdoc cref="PageServer.DoneAcknowledged"/>
    public Action? DoneAcknowledged { get; set; }

    public void Serve(FrameConnection lane)
    {
        while (!served.Stopped)
        {
            var type = lane.ReadFrame();
            if (type == FrameType.Heartbeat) continue;
            if (type == FrameType.Commit)
            {
                bool committed = CommitRequested?.Invoke() ?? true;
                if (committed)
                {
                    // The destination asks only once its QEMU has loaded the whole device state:
                    // a demand lane after a link cut needs none of it again.
                    deviceState.Forget();
                }

                Span<byte> decision = [(byte)(committed ? CommitDecision.Committed : CommitDecision.RolledBack)];
                lane.Send(FrameType.CommitDecision, decision);
                served.Log?.Invoke($"commit asked: {(committed ? "committed" : "rolled back")}");
            }
            else if (type == FrameType.Abandon)
            {
                bool resumed = AbandonRequested?.Invoke() ?? false;
                Span<byte> answer = [(byte)(resumed ? 1 : 0)];
                lane.Send(FrameType.AbandonAck, answer);
                served.Log?.Invoke($"abandon asked: {(resumed ? "the source runs again" : "refused")}");
                if (resumed)
                {
                    AbandonAcknowledged?.Invoke();
                }
            }
            else if (type == FrameType.Done)
            {
                DoneReported?.Invoke();
                lane.Send(FrameType.DoneAck, default);
                DoneAcknowledged?.Invoke();
            }
            else throw new ProtocolException($"unexpected {type} on the control lane");
        }
    }
}
