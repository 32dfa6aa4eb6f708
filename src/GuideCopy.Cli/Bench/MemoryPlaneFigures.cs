namespace GuideCopy.Cli.Bench;

/// <summary>What `guidecopy bench memory-plane --json` prints: the round trip, then one <see cref="LaneFigures"/> per lane protection.</summary>
internal sealed record MemoryPlaneFigures(string Link, double RoundTripP50Us, double RoundTripP99Us, IReadOnlyList<LaneFigures> Lanes);
