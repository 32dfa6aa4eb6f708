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
}

/// <summary>Which lane a connection is: demand pages never queue behind bulk data.</summary>
public enum Lane : byte
{
    Demand = 1,
    Push = 2,
}
