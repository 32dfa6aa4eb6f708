namespace GuideCopy.Lab;

/// <summary>A lab operation that cannot go on; the message says what to fix.</summary>
public sealed class LabException(string message, Exception? inner = null) : Exception(message, inner);
