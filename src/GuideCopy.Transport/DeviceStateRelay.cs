using System.Buffers;
using System.Buffers.Binary;

namespace GuideCopy.Transport;

/// <summary>
/// The device state, as the paused source QEMU writes it, relayed to the destination on its
/// demand lane: uncapped, and idle while the VM is paused. Kept whole until the destination
/// has loaded it, so a demand lane that comes after a lost one gets it again from byte 0.
/// </summary>
internal sealed class DeviceStateRelay(ServedRam served)
{
    /// <summary>Orders device-state sends against a new demand lane's replay of what was sent before it.</summary>
    private readonly object _deviceStateLock = new();

    /// <summary>The device state sent so far; null once the destination has loaded it (it asked for the commit).</summary>
    private ArrayBufferWriter<byte>? _deviceState = new();

    private bool _deviceStateEnded;

    /// <summary>The WarmVerdict frame's payload once known; every demand lane from then on gets it.</summary>
    private byte[]? _warmVerdict;
    private long _deviceStateBytes;

    /// <summary>Sends <paramref name="bytes"/> on the demand lane if one is up; the next demand lane gets them otherwise.</summary>
    public void Send(ReadOnlySpan<byte> bytes)
    {
        lock (_deviceStateLock)
        {
            // Kept whole (hundreds of KiB, independent of RAM) so a demand lane that comes after a
            // lost one gets it again from byte 0: the destination skips what it already has.
            if (_deviceState is null)
            {
                return; // loaded already: nothing of it is asked for any more
            }

            BuffersExtensions.Write(_deviceState, bytes);
            _deviceStateBytes += bytes.Length;
            var lane = served.DemandLane;
            if (lane is null || lane.IsDisposed)
            {
                return; // the next demand lane gets it all
            }

            try
            {
                SendChunks(lane, bytes);
            }
            catch (IOException)
            {
                lane.Dispose(); // the destination reconnects and gets it all again
            }
        }
    }

    /// <summary>The device state is whole: the destination may finish loading it.</summary>
    public void End()
    {
        lock (_deviceStateLock)
        {
            _deviceStateEnded = true;
            var lane = served.DemandLane;
            if (lane is null || lane.IsDisposed || _deviceState is null)
            {
                return;
            }

            try
            {
                SendEnd(lane);
            }
            catch (IOException)
            {
                lane.Dispose();
            }
        }
    }

    /// <summary>
    /// A new demand lane: it becomes the lane of the device state and the zero map, and gets what
    /// of the device state is out. Returns whether the zero map is known already (<see cref="HoleAnnouncer.AttachDemandLane"/>).
    /// </summary>
    public bool Attach(FrameConnection lane, HoleAnnouncer holes)
    {
        bool zeroMapReady;
        lock (_deviceStateLock)
        {
            zeroMapReady = holes.AttachDemandLane(lane);

            // A lane after a lost one: what of the device state is out goes again, before any
            // later piece (Send holds the same lock).
            if (_deviceState is { WrittenCount: > 0 })
            {
                SendChunks(lane, _deviceState.WrittenSpan);
            }

            if (_deviceStateEnded && _deviceState is not null)
            {
                SendEnd(lane);
            }

            if (_warmVerdict is not null)
            {
                lane.Send(FrameType.WarmVerdict, _warmVerdict);
            }
        }
        return zeroMapReady;
    }

    /// <summary>
    /// Which warm pages are stale (<see cref="FrameType.WarmVerdict"/>): sent now on the demand
    /// lane if one is up, and on every later one. The destination holds its warm pages until it
    /// has it (and opens no push lane before), so a lost one must come again.
    /// </summary>
    public void SetWarmVerdict(byte[] payload)
    {
        lock (_deviceStateLock)
        {
            _warmVerdict = payload;
            var lane = served.DemandLane;
            if (lane is null || lane.IsDisposed)
            {
                return;
            }

            try
            {
                lane.Send(FrameType.WarmVerdict, payload);
            }
            catch (IOException)
            {
                lane.Dispose();
            }
        }
    }

    /// <summary>The destination has loaded the device state: nothing of it is kept or sent any more.</summary>
    public void Forget()
    {
        lock (_deviceStateLock) _deviceState = null;
    }

    private static void SendChunks(FrameConnection lane, ReadOnlySpan<byte> bytes)
    {
        while (bytes.Length > 0)
        {
            int n = Math.Min(bytes.Length, Wire.MaxDeviceStateChunk);
            lane.Send(FrameType.DeviceState, bytes[..n]);
            bytes = bytes[n..];
        }
    }

    private void SendEnd(FrameConnection lane)
    {
        Span<byte> total = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(total, _deviceStateBytes);
        lane.Send(FrameType.DeviceStateEnd, total);
    }
}
