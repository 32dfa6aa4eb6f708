using GuideCopy.Interop;

namespace GuideCopy.MemoryPlane.Tests;

/// <summary>
/// The demand-path threads ask the kernel for SCHED_FIFO; what the kernel then reports for the
/// thread (proc(5) stat fields 40-41) is what a user checking with `ps -L -o cls,rtprio` sees.
/// </summary>
public class ThreadSchedulingTests
{
    private const int SchedOther = 0, SchedFifo = 1;

    // /proc/thread-self -> "<pid>/task/<tid>": the kernel's own id of the calling thread.
    private static (int Policy, int RealtimePriority) Mine() =>
        ThreadScheduling.Of(Environment.ProcessId, int.Parse(Path.GetFileName(new FileInfo("/proc/thread-self").LinkTarget!)));

    private static (int Policy, int RealtimePriority, string? Applied) OnNewThread(int priority)
    {
        (int, int, string?) seen = default;
        var t = new Thread(() =>
        {
            string? applied = ThreadScheduling.PreferForLatency(priority);
            var (policy, rt) = Mine();
            seen = (policy, rt, applied);
        });
        t.Start();
        t.Join();
        return seen;
    }

    [Test]
    public void ThreadsALatencyThreadCreatesStartInTheFairClass()
    {
        Assume.That(Environment.UserName, Is.EqualTo("root"), "SCHED_FIFO needs CAP_SYS_NICE");
        (int, int) parent = default, child = default;
        var t = new Thread(() =>
        {
            ThreadScheduling.PreferForLatency(2);
            parent = Mine();
            // What a runtime does when this thread queues work and the pool needs a worker.
            var c = new Thread(() => child = Mine());
            c.Start();
            c.Join();
        });
        t.Start();
        t.Join();
        Assert.That(parent, Is.EqualTo((SchedFifo, 2)));
        Assert.That(child, Is.EqualTo((SchedOther, 0)), "a created thread must not inherit SCHED_FIFO (SCHED_RESET_ON_FORK)");
    }

    [Test]
    public void ThreadAskingForLatencyRunsUnderSchedFifoAndOthersDoNot()
    {
        Assume.That(Environment.UserName, Is.EqualTo("root"), "SCHED_FIFO needs CAP_SYS_NICE");
        var (policy, rt, applied) = OnNewThread(3);
        Assert.That(applied, Is.EqualTo("SCHED_FIFO 3"));
        Assert.That((policy, rt), Is.EqualTo((SchedFifo, 3)));

        // Per thread: the process's other threads (this one) keep the fair class.
        Assert.That(Mine(), Is.EqualTo((SchedOther, 0)));
    }

    [Test]
    public void PriorityZeroLeavesTheThreadAlone()
    {
        var (policy, rt, applied) = OnNewThread(0);
        Assert.That(applied, Is.Null);
        Assert.That((policy, rt), Is.EqualTo((SchedOther, 0)));
    }

    [Test]
    public async Task ThePausesThreadRunsUnderSchedFifoUntilItGoesBackToFair()
    {
        Assume.That(Environment.UserName, Is.EqualTo("root"), "SCHED_FIFO needs CAP_SYS_NICE");
        var (urgent, after, name) = await ThreadScheduling.RunForLatency("pause-test", 2, () =>
        {
            var during = Mine();
            ThreadScheduling.BackToFair();
            return (during, Mine(), Thread.CurrentThread.Name);
        });
        Assert.That(urgent, Is.EqualTo((SchedFifo, 2)));
        Assert.That(after, Is.EqualTo((SchedOther, 0)), "after BackToFair");
        Assert.That(name, Is.EqualTo("pause-test"));
        Assert.That(Mine(), Is.EqualTo((SchedOther, 0)), "the caller's thread is untouched");
    }

    [Test]
    public void AnExceptionOnThePausesThreadReachesItsCaller()
    {
        var run = ThreadScheduling.RunForLatency<int>("pause-test", 0, () => throw new InvalidOperationException("QEMU said no"));
        Assert.That(async () => await run, Throws.InvalidOperationException.With.Message.EqualTo("QEMU said no"));
    }
}
