using System.Collections;
using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using GuideCopy.Migration.Control;
using GuideCopy.Migration.Journal;
using LibvirtSharp;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// The agent's live sides of one role (source or destination), by migration id: each request
/// finds its side here, and a step that fails takes its side out and rolls it back in one of
/// the three ways below (the role contract's methods in <see cref="AgentServer"/> say which).
/// </summary>
internal sealed class MigrationSides<T>(Action<string> log) : IEnumerable<KeyValuePair<string, T>>
    where T : class, IMigrationSide
{
    private readonly ConcurrentDictionary<string, T> _sides = new();

    public ICollection<T> Values => _sides.Values;

    public bool Contains(string id) => _sides.ContainsKey(id);

    public bool TryGet(string id, [MaybeNullWhen(false)] out T side) => _sides.TryGetValue(id, out side);

    public T Get(string id) =>
        _sides.TryGetValue(id, out var v) ? v : throw new AgentException($"no migration {id} on this host");

    /// <summary>A side taken up from the journal at start.</summary>
    public void Put(string id, T side) => _sides[id] = side;

    public bool Remove(string id) => _sides.TryRemove(id, out _);

    /// <summary>
    /// A new side for <paramref name="id"/>, refused if the id is in use here in either role or
    /// known to the journal: the live migration is never touched (a refused side never made
    /// its work directory, so its disposal removes nothing).
    /// </summary>
    public T Add<TOther>(string id, Func<T> create, MigrationSides<TOther> otherRole, MigrationJournal journal)
        where TOther : class, IMigrationSide
    {
        MigrationJournal.CheckId(id);
        if (Contains(id) || otherRole.Contains(id) || journal.Read(id) is not null)
        {
            throw new AgentException($"migration {id} is already known here: use a new id");
        }

        var side = create();
        if (!_sides.TryAdd(id, side) || otherRole.Contains(id))
        {
            _sides.TryRemove(new KeyValuePair<string, T>(id, side));
            side.Dispose();
            throw new AgentException($"migration {id} is already known here: use a new id");
        }

        return side;
    }

    /// <summary>Takes the side out and aborts it; an abort that fails is only logged.</summary>
    public void Drop(string id, T side, string why)
    {
        _sides.TryRemove(id, out _);
        TryAbort(side, why);
    }

    /// <summary>A step of a side this host only just made or armed: if it fails, the side goes and is aborted, whoever removed it meanwhile.</summary>
    public async Task<TResult> RunOrAbortAsync<TResult>(string id, T side, Func<T, Task<TResult>> step, string why)
    {
        try
        {
            return await step(side);
        }
        catch
        {
            Drop(id, side, why);
            throw;
        }
    }

    /// <summary>
    /// A step of a side that others may have taken out meanwhile: if it fails, the side is aborted
    /// only if <paramref name="undoable"/> says it may still be undone and this call is the one
    /// that took it out (else whoever did aborts it).
    /// </summary>
    public async Task<TResult> RunOrAbortIfHereAsync<TResult>(string id, T side, Func<T, Task<TResult>> step, Func<T, bool> undoable, string why)
    {
        try
        {
            return await step(side);
        }
        catch
        {
            if (undoable(side) && _sides.TryRemove(id, out _))
            {
                TryAbort(side, why);
            }

            throw;
        }
    }

    /// <summary>A step that rolls its side back by itself when it fails: the side only leaves the list, unless <paramref name="stays"/>.</summary>
    public async Task<TResult> RunOrForgetAsync<TResult>(string id, T side, Func<T, Task<TResult>> step, Func<T, bool> stays)
    {
        try
        {
            return await step(side);
        }
        catch
        {
            if (!stays(side))
            {
                _sides.TryRemove(id, out _);
            }

            throw;
        }
    }

    private void TryAbort(T side, string why)
    {
        try
        {
            side.Abort(why);
        }
        catch (Exception e) when (e is AgentException or LibvirtException or IOException)
        {
            log(e.Message);
        }
    }

    public IEnumerator<KeyValuePair<string, T>> GetEnumerator() => _sides.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
