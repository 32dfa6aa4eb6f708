using GuideCopy.Interop;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>
/// The demand-path threads ask the kernel for SCHED_FIFO; what the kernel then reports for the
/// thread (proc(5) stat fields 40-41) is what a user checking with `ps -L -o cls,rtprio` sees.
/// </summary>
public class ThreadSchedulingTests
{
    private const int SchedOther = 0, SchedFifo = 1;

    private static (int Policy, int RealtimePriority, string? Applied) OnNewThread(int priority)
    {
        (int, int, string?) seen = default;
        var t = new Thread(() =>
        {
            string? applied = ThreadScheduling.PreferForLatency(priority);
            // /proc/thread-self -> "<pid>/task/<tid>": the kernel's own id of this thread.
            int tid = int.Parse(Path.GetFileName(new FileInfo("/proc/thread-self").LinkTarget!));
            var (policy, rt) = ThreadScheduling.Of(Environment.ProcessId, tid);
            seen = (policy, rt, applied);
        });
        t.Start();
        t.Join();
        return seen;
    }

    [Test]
    public void ThreadAskingForLatencyRunsUnderSchedFifoAndOthersDoNot()
    {
        Assume.That(Environment.UserName, Is.EqualTo("root"), "SCHED_FIFO needs CAP_SYS_NICE");
        var (policy, rt, applied) = OnNewThread(3);
        Assert.That(applied, Is.EqualTo("SCHED_FIFO 3"));
        Assert.That((policy, rt), Is.EqualTo((SchedFifo, 3)));

        // Per thread: the process's other threads (this one) keep the fair class.
        var self = ThreadScheduling.Of(Environment.ProcessId, int.Parse(Path.GetFileName(new FileInfo("/proc/thread-self").LinkTarget!)));
        Assert.That(self, Is.EqualTo((SchedOther, 0)));
    }

    [Test]
    public void PriorityZeroLeavesTheThreadAlone()
    {
        var (policy, rt, applied) = OnNewThread(0);
        Assert.That(applied, Is.Null);
        Assert.That((policy, rt), Is.EqualTo((SchedOther, 0)));
    }
}
