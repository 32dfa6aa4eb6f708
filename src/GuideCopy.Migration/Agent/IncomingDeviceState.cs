using System.Diagnostics;
using System.Net.Sockets;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Host;
using GuideCopy.Transport;
using LibvirtSharp;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// The device state on its way into the destination QEMU: the bytes the pager takes off the
/// demand lane, written into QEMU's incoming socket as they come, the length the source says
/// it sent, and when the first and the last byte came (the pause's bounds, seen from here).
/// </summary>
internal sealed class IncomingDeviceState(string migrationId) : IDisposable
{
    private DeviceStateTransfer.ArmedLoad? _load;
    private readonly TaskCompletionSource<long> _deviceState = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _deviceStateEndAt;

    /// <summary>The first device-state byte's arrival: QEMU sends its header just before it stops the vCPUs, so the pause began at most this early.</summary>
    private long _deviceStateFirstAt;

    public bool Armed => _load is not null;

    /// <summary><see cref="Stopwatch"/> timestamp of the first byte (0 until it came).</summary>
    public long FirstByteAt => _deviceStateFirstAt;

    /// <summary><see cref="Stopwatch"/> timestamp of the source's end-of-stream.</summary>
    public long EndedAt => _deviceStateEndAt;

    /// <summary>QEMU in migrate-incoming on <paramref name="socketPath"/>, this agent connected to it.</summary>
    public async Task ArmAsync(Domain domain, string socketPath, TimeSpan timeout, CancellationToken ct) =>
        _load = await DeviceStateTransfer.ArmLoadAsync(domain, socketPath, timeout, ct);

    /// <summary>The pager hands the device-state bytes it reads on the demand lane to QEMU, and says when the source ended the stream.</summary>
    public void FeedFrom(Pager pager)
    {
        var load = _load!;
        pager.DeviceStateReceived = bytes =>
        {
            if (_deviceStateFirstAt == 0)
            {
                _deviceStateFirstAt = Stopwatch.GetTimestamp();
            }

            try
            {
                load.Write(bytes);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // QEMU refused its stream (it exited?): the load fails, and with it the commit.
                _deviceState.TrySetException(new AgentException($"the destination QEMU stopped taking its device state: {e.Message}"));
            }
        };
        pager.DeviceStateEnded = length =>
        {
            _deviceStateEndAt = Stopwatch.GetTimestamp();
            _deviceState.TrySetResult(length);
        };
    }

    /// <summary>Waits for the whole stream, checks its length against what QEMU was given, and lets QEMU finish loading it: the length.</summary>
    public async Task<long> LoadAsync(TimeSpan timeout, CancellationToken ct)
    {
        long length;
        try
        {
            length = await _deviceState.Task.WaitAsync(timeout, ct);
        }
        catch (TimeoutException)
        {
            throw new AgentException($"no device state came from the source within {timeout.TotalSeconds:0} s (Agent:DeviceStateTimeoutSeconds)");
        }

        if (length != _load!.Written)
        {
            throw new AgentException($"the device state is {_load.Written} bytes here, the source sent {length}: not loading it");
        }

        await _load.CompleteAsync(timeout, ct);
        return length;
    }

    /// <summary>After the resume, off the pause's path: x-ignore-shared off (<see cref="DeviceStateTransfer.ArmedLoad.Disarm"/>).</summary>
    public void DisarmLater()
    {
        var load = _load;
        _ = Task.Run(() => load?.Disarm());
    }

    public void Dispose()
    {
        _deviceState.TrySetException(new AgentException($"migration {migrationId} ended here before its device state came"));
        _load?.Dispose();
        _load = null;
    }
}
