using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using GuideCopy.Interop;
using GuideCopy.Lab;

namespace GuideCopy.Cli.Neighbour;

/// <summary>The neighbour flow's throughput in one second (host time from the flow's start), bytes/s.</summary>
public readonly record struct FlowSample(double T, double BytesPerSecond);

/// <summary>
/// Another tenant's traffic on the lab link during an evacuation: one TCP stream from a socket in
/// the source host's network namespace to one in the destination's, written as fast as TCP lets
/// it, over the same veth pair and tc cap as the migrations. Its receiver counts what arrives, a
/// sample a second: what a neighbour keeps of the link before, during and after.
/// </summary>
internal sealed class NeighbourFlow : IDisposable
{
    /// <summary>Port the receiver listens on in the destination host (the agents use 7171 and ephemeral ports).</summary>
    public const int Port = 7199;

    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly List<FlowSample> _samples = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _receiver, _sender, _sampler;
    private readonly ManualResetEventSlim _listening = new();
    private long _received;
    private Exception? _failure;

    private NeighbourFlow(LabHost from, LabHost to)
    {
        var listenAt = new IPEndPoint(IPAddress.Parse(to.Address), Port);
        _receiver = new Thread(() => Guarded(() => Receive(to, listenAt))) { IsBackground = true, Name = "neighbour receiver" };
        _sender = new Thread(() => Guarded(() => Send(from, listenAt))) { IsBackground = true, Name = "neighbour sender" };
        _sampler = new Thread(Sample) { IsBackground = true, Name = "neighbour sampler" };
    }

    /// <summary>Starts the flow; returns once its receiver listens (the sender then connects on its own).</summary>
    public static NeighbourFlow Start(LabHost from, LabHost to)
    {
        var flow = new NeighbourFlow(from, to);
        flow._receiver.Start();
        if (!flow._listening.Wait(TimeSpan.FromSeconds(10)))
        {
            throw new LabException($"the neighbour flow's receiver did not listen on {to.Address}:{Port} within 10 s{(flow._failure is { } e ? ": " + e.Message : "")}");
        }

        flow._sender.Start();
        flow._sampler.Start();
        return flow;
    }

    /// <summary>Seconds since the flow started (the samples' clock).</summary>
    public double Now => _clock.Elapsed.TotalSeconds;

    public IReadOnlyList<FlowSample> Samples
    {
        get
        {
            lock (_samples)
            {
                return _samples.ToList();
            }
        }
    }

    /// <summary>Why the flow stopped early, if it did (a neighbour that died is a finding, not a crash of the evacuation).</summary>
    public string? Failure => _failure?.Message;

    /// <summary>Mean throughput over the samples in [from, to), bytes/s; null when none fell there.</summary>
    public double? Mean(double from, double to)
    {
        var inside = Samples.Where(s => s.T > from && s.T <= to).ToList();
        return inside.Count == 0 ? null : inside.Average(s => s.BytesPerSecond);
    }

    private void Guarded(Action body)
    {
        try
        {
            body();
        }
        catch (Exception e) when (!_stop.IsCancellationRequested)
        {
            _failure ??= e;
            _listening.Set();
        }
        catch (Exception)
        {
            // Stopping closes the sockets under the threads: their errors are the stop.
        }
    }

    private void Receive(LabHost to, IPEndPoint at)
    {
        NetworkNamespace.EnterOnThisThread($"/run/netns/{to.State.Netns}");
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Bind(at);
        listener.Listen(1);
        _listening.Set();
        using var stop = _stop.Token.Register(listener.Close);
        using var conn = listener.Accept();
        using var stopConn = _stop.Token.Register(conn.Close);
        var buffer = new byte[256 * 1024];
        int n;
        while ((n = conn.Receive(buffer)) > 0)
        {
            Interlocked.Add(ref _received, n);
        }
    }

    private void Send(LabHost from, IPEndPoint to)
    {
        NetworkNamespace.EnterOnThisThread($"/run/netns/{from.State.Netns}");
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var stop = _stop.Token.Register(s.Close);
        s.Connect(to);
        var buffer = new byte[64 * 1024];
        Random.Shared.NextBytes(buffer);
        while (!_stop.IsCancellationRequested)
        {
            s.Send(buffer);
        }
    }

    private void Sample()
    {
        long last = 0;
        double lastT = Now;
        while (!_stop.Token.WaitHandle.WaitOne(1000))
        {
            long now = Interlocked.Read(ref _received);
            double t = Now;
            lock (_samples)
            {
                _samples.Add(new FlowSample(Math.Round(t, 2), Math.Round((now - last) / (t - lastT))));
            }

            last = now;
            lastT = t;
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _sender.Join(TimeSpan.FromSeconds(5));
        _receiver.Join(TimeSpan.FromSeconds(5));
        _sampler.Join(TimeSpan.FromSeconds(5));
        _stop.Dispose();
        _listening.Dispose();
    }
}
