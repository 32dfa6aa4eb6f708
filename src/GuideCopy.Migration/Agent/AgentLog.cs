using GuideCopy.Migration.Journal;
using Microsoft.Extensions.Logging;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// The agent's log, each line at its priority: under systemd the console formatter prefixes
/// `&lt;N&gt;` (sd-daemon(3)), which journald stores as PRIORITY, so `journalctl -u guidecopy-agent
/// -p warning` shows what went wrong. Every journal step of a migration is one line of
/// key=value fields (migration, role, domain, stage), greppable and parseable.
/// </summary>
public sealed class AgentLog(ILogger logger)
{
    /// <summary>Lines into a plain callback, every one at Information (unit tests, tools).</summary>
    public static AgentLog To(Action<string> lines) => new(new CallbackLogger(lines));

    public void Info(string message) => logger.Log(LogLevel.Information, "{Message}", message);

    public void Warning(string message) => logger.Log(LogLevel.Warning, "{Message}", message);

    public void Error(string message) => logger.Log(LogLevel.Error, "{Message}", message);

    /// <summary>The stage a migration's journal just took here: rolled back is a warning (the VM is safe on the source), failed an error.</summary>
    public void Step(JournalEntry entry)
    {
        var level = entry.Stage switch
        {
            MigrationStage.Failed => LogLevel.Error,
            MigrationStage.RolledBack => LogLevel.Warning,
            _ => LogLevel.Information,
        };
        logger.Log(level, "migration={MigrationId} role={Role} domain={Domain} stage={Stage}{Note}",
            entry.Id, entry.Role.ToString().ToLowerInvariant(), entry.Domain, entry.Stage, entry.Note is null ? "" : $" note=\"{entry.Note}\"");
    }

    /// <summary>The callback the memory plane's parts take (pager, page server): their lines are informational.</summary>
    public static implicit operator Action<string>(AgentLog log) => log.Info;

    private sealed class CallbackLogger(Action<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines(formatter(state, exception));
    }
}
