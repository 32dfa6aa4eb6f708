using GuideCopy.Migration.Agent;

namespace GuideCopy.Migration.Controller;

/// <summary>Both sides armed (<see cref="DestinationArming"/>): what the switchover and the report need of it.</summary>
/// <param name="Source">The source's arm: its page server, the lanes' session, the lanes.</param>
/// <param name="GuideStarted">The guide's QEMU runs beside the source: the switchover hands it the guide's options.</param>
/// <param name="GuideFailure">Why a guide that was asked for did not start (for the report's guide summary); null otherwise.</param>
internal sealed record ArmedSides(SourceArmResult Source, bool GuideStarted, string? GuideFailure);
