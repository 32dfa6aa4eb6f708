using System.Diagnostics;

namespace GuideCopy.Migration.Controller;

/// <summary>
/// The controller's clock: how long each phase took (the report's phasesMs) and the live
/// progress events, stamped with the seconds the migration has run so far.
/// </summary>
internal sealed class PhaseClock(Action<MigrationProgress>? progress)
{
    private readonly Stopwatch _clock = new();
    private TimeSpan _lastMark;

    /// <summary>The report's phasesMs: each phase by name, and the agents' own step timings.</summary>
    public Dictionary<string, double> Phases { get; } = [];

    public TimeSpan Elapsed => _clock.Elapsed;

    public void Start() => _clock.Start();

    public void Stop() => _clock.Stop();

    /// <summary>Records how long the phase that ends now took.</summary>
    public void Phase(string name)
    {
        var now = _clock.Elapsed;
        Phases[name] = Math.Round((now - _lastMark).TotalMilliseconds, 1);
        _lastMark = now;
    }

    public void Report(string phase) =>
        progress?.Invoke(new MigrationProgress(phase, 0, 0, 0, 0, _clock.Elapsed.TotalSeconds));

    public void Report(string phase, long pagesDone, long pagesTotal, long faults, long bytesOnWire) =>
        progress?.Invoke(new MigrationProgress(phase, pagesDone, pagesTotal, faults, bytesOnWire, _clock.Elapsed.TotalSeconds));
}
