using System.Diagnostics;
using GuideCopy.Interop;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Journal;
using GuideCopy.Transport;
using LibvirtSharp;
using LibvirtSharp.Native;

namespace GuideCopy.Migration.Agent;

// The commit point: "Committing" journaled, the source's decision asked, and the resume (or the copy destroyed).
public sealed partial class DestinationSide
{
    /// <summary>
    /// The commit point. "Committing" is journaled first: from here on nothing destroys this
    /// copy unless the source says it rolled back. The source decides (its journal is the one
    /// record of the decision) and this side resumes only on "committed". Idempotent: a
    /// controller that lost the reply asks again and gets the same answer.
    /// </summary>
    /// <param name="justLoaded">Called by the load that just saw QEMU finish: its state is known, no libvirt call needed to check it.</param>
    public async Task<ResumeResult> ResumeAsync(CancellationToken ct, bool justLoaded = false)
    {
        Task<bool> decision;
        lock (_lock)
        {
            switch (Stage)
            {
                case MigrationStage.Committed or MigrationStage.Completed:
                    return new ResumeResult(Entry!.ResumedAtUnixMs);
                case MigrationStage.RolledBack:
                    throw new AgentException($"migration {Id} rolled back: {Entry!.Note}");
                case MigrationStage.DestinationLoaded:
                    // Ask for the decision only with a copy that can take it: a destination QEMU
                    // that died after the load must roll back, not be committed to.
                    // (One call: a domain that is not active is not paused either.)
                    if (_domain is null || _paging is { IsCompleted: true } || (!justLoaded && _domain.State.State != virDomainState.VIR_DOMAIN_PAUSED))
                    {
                        throw new AgentException($"the destination copy of {Domain} is not paused with its device state loaded (its QEMU exited?): not committing");
                    }

                    Record(Entry! with { Stage = MigrationStage.Committing, SessionId = _pager?.SessionId is > 0 and var s ? s : Entry!.SessionId });
                    break;
                case MigrationStage.Committing:
                    break;
                default:
                    throw new AgentException($"migration {Id} is {Stage} here: the device state is not loaded");
            }

            decision = _decision ??= OnCommitThread();
        }

        bool committed;
        try
        {
            committed = await decision.WaitAsync(TimeSpan.FromSeconds(Options.CommitAnswerSeconds), ct);
        }
        catch (TimeoutException)
        {
            throw new AgentException($"the source has not answered whether migration {Id} may commit within {Options.CommitAnswerSeconds} s; " +
                                     "the destination stays paused and keeps asking (its agent decides when the source answers)");
        }

        if (Stage == MigrationStage.Failed)
        {
            throw new AgentException($"migration {Id} failed after the commit point: {Entry!.Note}");
        }

        return committed ? new ResumeResult(Entry!.ResumedAtUnixMs)
            : throw new AgentException($"the source rolled back migration {Id}: the destination copy was destroyed");
    }

    /// <summary>
    /// <see cref="ResolveCommit"/> on a thread of its own, in the scheduling class of the fault
    /// path (<see cref="AgentOptions.DemandRealtimePriority"/>): the question, the answer and the
    /// resume are the end of the pause, and on a host whose CPUs run guests a thread-pool thread
    /// waits for its time slice (docs/tuning.md, "The destination's commit thread").
    /// </summary>
    private Task<bool> OnCommitThread()
    {
        var decided = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        new Thread(() =>
        {
            ThreadScheduling.PreferForLatency(Options.DemandRealtimePriority);
            try
            {
                decided.TrySetResult(ResolveCommit());
            }
            catch (Exception e)
            {
                decided.TrySetException(e);
            }
        }) { IsBackground = true, Name = "commit" }.Start();
        return decided.Task;
    }

    /// <summary>Asks the source until it answers, then resumes (committed) or destroys this copy (rolled back).</summary>
    private bool ResolveCommit()
    {
        var source = LaneEndpoint.Parse(Entry!.PageServer!);
        int attempt = 0;
        while (true)
        {
            _stop.Token.ThrowIfCancellationRequested();
            try
            {
                // On the control lane the pager holds open (a fresh one after a restart or a lost answer).
                var answer = _pager is { } pager
                    ? pager.AskCommit(3000)
                    : SourceControl.AskCommit(source, MigrationKey, ProtectionOf(Entry), Entry.SessionId, 3000);
                if (answer == CommitDecision.Committed)
                {
                    ApplyCommit();
                    return true;
                }

                lock (_lock)
                {
                    Record(Entry with { Stage = MigrationStage.RolledBack, Note = "the source rolled back before committing" });
                }

                DestroyCopy();
                Dispose();
                return false;
            }
            catch (IOException e)
            {
                if (attempt++ % 10 == 0)
                {
                    Log($"{Id}: commit decision: {e.Message}; asking again");
                }

                _stop.Token.WaitHandle.WaitOne(Math.Min(2000, 100 * attempt));
            }
        }
    }

    private void ApplyCommit()
    {
        var resume = Stopwatch.StartNew();
        if (_domain is not null && TryResumeAtOnce())
        {
            _resumeMs = resume.Elapsed.TotalMilliseconds;
            long at = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            _pager?.StartPush();
            lock (_lock)
            {
                Record(Entry! with { Stage = MigrationStage.Committed, ResumedAtUnixMs = at });
            }

            Log($"{Id}: committed: {Domain} runs here (resumed in {_resumeMs:0.0} ms)");
            _deviceState.DisarmLater();
            StartCompletion();
            return;
        }

        _conn ??= Connection.Open(Options.LibvirtUri);
        _domain ??= _conn.TryLookupDomain(Domain);
        if (_domain is null || !_domain.IsActive)
        {
            // Between the question and this line the QEMU died: the source holds the frozen RAM
            // and will not resume (it committed). An operator's case; say so everywhere.
            lock (_lock)
            {
                Record(Entry! with { Stage = MigrationStage.Failed, Note = "the destination QEMU exited after the source committed: the source keeps its paused copy and frozen RAM; nothing resumes it by itself" });
            }

            Log($"{Id}: {Entry!.Note}");
            return;
        }

        if (_domain.State.State == virDomainState.VIR_DOMAIN_PAUSED)
        {
            _domain.Resume();
        }

        _pager?.StartPush();

        long resumedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        lock (_lock)
        {
            Record(Entry! with { Stage = MigrationStage.Committed, ResumedAtUnixMs = resumedAt });
        }

        Log($"{Id}: committed: {Domain} runs here");
        StartCompletion();
    }

    /// <summary>
    /// The resume, first of all, on the handle the load used: one libvirt call (QMP 'cont') in
    /// the pause. False when it failed (the checks below say why: QEMU gone, already running).
    /// </summary>
    private bool TryResumeAtOnce()
    {
        try
        {
            _domain!.Resume();
            return true;
        }
        catch (LibvirtException e)
        {
            Log($"{Id}: resume: {e.LibvirtMessage}; checking the domain");
            return false;
        }
    }
}
