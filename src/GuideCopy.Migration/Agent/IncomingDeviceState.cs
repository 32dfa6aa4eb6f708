using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;
using GuideCopy.Interop;
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

    /// <summary>QEMU in migrate-incoming on <paramref name="socketPath"/>, this agent connected to it; with <paramref name="startOnLoad"/>, QEMU runs once loaded.</summary>
    public async Task ArmAsync(Domain domain, string socketPath, bool startOnLoad, TimeSpan timeout, CancellationToken ct) =>
        _load = await DeviceStateTransfer.ArmLoadAsync(domain, socketPath, startOnLoad, timeout, ct);

    /// <summary>
    /// The pager hands the device-state bytes it reads on the demand lane to QEMU, and says when
    /// the source ended the stream. The bytes are copied and written into QEMU's socket by a
    /// thread of their own, never by the demand lane's reader: while QEMU loads, a fault of its
    /// main thread on guest RAM (a page not in yet, or a zero page whose zero map comes behind the
    /// state on the same lane) is answered on that lane, and a reader blocked in a write to a QEMU
    /// that waits for that answer would wait with it (seen: "no device state within 60 s" with the
    /// whole state sent, 1 fault-matrix run in ~20). The copy is the device state's size (hundreds
    /// of KiB, independent of RAM), once per migration.
    /// </summary>
    /// <param name="realtimePriority">The writer's SCHED_FIFO priority (the demand path's: the pause waits for it); 0: fair class.</param>
    public void FeedFrom(Pager pager, int realtimePriority)
    {
        var load = _load!;
        var writer = new Thread(() =>
        {
            ThreadScheduling.PreferForLatency(realtimePriority);
            WriteInto(load);
        }) { IsBackground = true, Name = "devstate-in" };
        writer.Start();
        pager.DeviceStateReceived = bytes =>
        {
            if (_deviceStateFirstAt == 0)
            {
                _deviceStateFirstAt = Stopwatch.GetTimestamp();
            }

            Interlocked.Add(ref _received, bytes.Length);
            try
            {
                _pieces.Add(bytes.ToArray());
            }
            catch (InvalidOperationException)
            {
                // The migration ended here (Dispose): nothing takes the state any more.
            }
        };
        pager.DeviceStateEnded = length =>
        {
            _deviceStateEndAt = Stopwatch.GetTimestamp();
            _sourceLength = length;
            _pieces.CompleteAdding();
        };
    }

    private readonly BlockingCollection<byte[]> _pieces = new();
    private long _writtenAt;

    /// <summary><see cref="Stopwatch"/> timestamp of the last byte written into QEMU.</summary>
    public long WrittenAt => _writtenAt;
    private long _sourceLength = -1;
    private long _received;

    /// <summary>The writer thread: every piece into QEMU in order, then the length the source said it sent.</summary>
    private void WriteInto(DeviceStateTransfer.ArmedLoad load)
    {
        try
        {
            foreach (var piece in _pieces.GetConsumingEnumerable())
            {
                load.Write(piece);
            }

            _writtenAt = Stopwatch.GetTimestamp();
            _deviceState.TrySetResult(_sourceLength);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or InvalidOperationException)
        {
            // QEMU refused its stream (it exited?), or the migration ended here first: the load fails, and with it the commit.
            _deviceState.TrySetException(new AgentException($"the destination QEMU stopped taking its device state: {e.Message}"));
        }
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
            // Where it stopped: nothing came (the source or the link), it came without its end, or QEMU stopped reading it.
            throw new AgentException($"no device state came from the source within {timeout.TotalSeconds:0} s (Agent:DeviceStateTimeoutSeconds): " +
                $"{Interlocked.Read(ref _received)} bytes came{(_pieces.IsAddingCompleted ? ", its end too" : "")}, QEMU took {_load?.Written ?? 0}");
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
        _pieces.CompleteAdding();
        _load?.Dispose();
        _load = null;
    }
}
