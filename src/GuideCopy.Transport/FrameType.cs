namespace GuideCopy.Transport;

/// <summary>Message types on a lane (docs/memory-plane.md, "Wire format").</summary>
public enum FrameType : byte
{
    ClientHello = 1,
    ServerChallenge = 2,
    ClientProof = 3,
    ServerWelcome = 4,
    ZeroMap = 5,
    Resume = 6,
    Demand = 7,
    Pages = 8,
    Heartbeat = 9,
    Error = 10,
    Complete = 11,
    ZeroPages = 12,
    /// <summary>Destination to source, control lane: "may I resume?" (the commit decision is the source's).</summary>
    Commit = 13,
    /// <summary>Source to destination: the decision, one byte (<see cref="CommitDecision"/>).</summary>
    CommitDecision = 14,
    /// <summary>Destination to source, control lane: every page is in; the source may destroy its copy.</summary>
    Done = 15,
    /// <summary>Source to destination: the Done was recorded.</summary>
    DoneAck = 16,
    /// <summary>
    /// Source to destination, demand lane, while the VM is paused: a piece of the device state as
    /// the source QEMU writes it (streamed: the destination QEMU loads while the source saves).
    /// </summary>
    DeviceState = 17,
    /// <summary>Source to destination: the device state is whole (u64 its length in bytes, a check).</summary>
    DeviceStateEnd = 18,
    /// <summary>
    /// A Pages frame whose page data is one LZ4 block (<see cref="PagePacker"/>): the same 16-byte
    /// header, then the block, which must decode to exactly Count pages. Sent only where it is
    /// shorter than the pages themselves, so it is never longer than a Pages frame.
    /// </summary>
    PackedPages = 19,
    /// <summary>
    /// Destination to source, control lane: the destination's copy was destroyed before its QEMU
    /// finished loading, so it never ran (the source's last device-state byte never reached it):
    /// the source, even one that committed, must resume its own (docs/migration.md, "The released commit").
    /// </summary>
    Abandon = 20,
    /// <summary>Source to destination: the answer to <see cref="Abandon"/>, one byte: 1 the source runs again, 0 refused (it completed).</summary>
    AbandonAck = 21,
    /// <summary>
    /// Source to destination, demand lane, after the pause: which warm pages (origin Warm, sent
    /// while the source ran) it wrote after sending them: u64 page count, then that bitmap. Those
    /// are dropped; every other warm page is good. Sent again on each later demand lane.
    /// </summary>
    WarmVerdict = 22,
}

/// <summary>The source's answer to <see cref="FrameType.Commit"/>.</summary>
public enum CommitDecision : byte
{
    /// <summary>Recorded durably: the source never resumes; the destination must.</summary>
    Committed = 1,
    /// <summary>The source rolled back (or is rolling back): the destination must never resume.</summary>
    RolledBack = 2,
}

/// <summary>Which lane a connection is: demand pages never queue behind bulk data.</summary>
public enum Lane : byte
{
    Demand = 1,
    Push = 2,
    /// <summary>Short-lived: the commit question and the end-of-transfer notice, never page data.</summary>
    Control = 3,
}
