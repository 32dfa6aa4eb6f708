using System.Buffers.Binary;

namespace GuideCopy.Transport;

/// <summary>
/// The device state as it comes in on the demand lane, passed on to
/// <see cref="Pager.DeviceStateReceived"/> once per byte, whatever demand lane brought it.
/// Only the demand lane's thread calls it, in order.
/// </summary>
internal sealed class DeviceStateStream
{
    /// <summary>Device-state bytes passed to <see cref="Received"/> so far, and on the current demand lane.</summary>
    private long _deviceStateDelivered, _deviceStateOnLane;

    private bool _deviceStateEnded;

    /// <inheritdoc cref="Pager.DeviceStateReceived"/>
    public Pager.DeviceStateSink? Received { get; set; }

    /// <inheritdoc cref="Pager.DeviceStateEnded"/>
    public Action<long>? Ended { get; set; }

    /// <summary>True once the end came (on whichever lane).</summary>
    public bool IsEnded => _deviceStateEnded;

    /// <summary>The source sends a new demand lane the device state again from its first byte.</summary>
    public void NewLane() => _deviceStateOnLane = 0;

    /// <summary>
    /// One piece of the device state. A demand lane lost mid-stream (a cut link, a frame that
    /// failed authentication) is followed by a new one on which the source sends the state again
    /// from byte 0 (<see cref="DeviceStateRelay.Attach"/>): only the bytes past what QEMU already has go on.
    /// </summary>
    public void Piece(ReadOnlySpan<byte> piece)
    {
        long start = _deviceStateOnLane;
        _deviceStateOnLane += piece.Length;
        if (_deviceStateOnLane <= _deviceStateDelivered)
        {
            return;
        }

        var fresh = piece[(int)Math.Max(0, _deviceStateDelivered - start)..];
        _deviceStateDelivered = _deviceStateOnLane;
        Received?.Invoke(fresh);
    }

    /// <summary>
    /// A DeviceStateEnd frame's <paramref name="payload"/>: the state's length in bytes, as the source
    /// counted it. A demand lane that comes up after the end, before the source forgot the state (it
    /// does at the commit question), is sent the whole state again, end included: the repeat says
    /// nothing new and is not an error (as one was, it dropped every such lane until the commit).
    /// </summary>
    public void End(ReadOnlySpan<byte> payload)
    {
        if (_deviceStateEnded)
        {
            return;
        }

        _deviceStateEnded = true;
        Ended?.Invoke(BinaryPrimitives.ReadInt64LittleEndian(payload));
    }
}
