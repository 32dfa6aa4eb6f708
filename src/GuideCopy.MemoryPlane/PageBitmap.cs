namespace GuideCopy.MemoryPlane;

/// <summary>
/// A thread-safe bit per page (lock-free set, no clear races): the destination's installed/done
/// set, the source's sent set, the zero map. Serialized as little-endian bytes, bit i = page i.
/// </summary>
public sealed class PageBitmap
{
    private readonly ulong[] _words;
    private long _count;

    public PageBitmap(long pageCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(pageCount);
        PageCount = pageCount;
        _words = new ulong[(pageCount + 63) / 64];
    }

    public long PageCount { get; }

    /// <summary>Number of set bits.</summary>
    public long Count => Volatile.Read(ref _count);

    public bool IsFull => Count == PageCount;

    /// <summary>Bytes of the serialized form: ceil(PageCount / 8).</summary>
    public int ByteLength => checked((int)((PageCount + 7) / 8));

    public bool IsSet(long page) => (Volatile.Read(ref _words[page >> 6]) & (1UL << (int)(page & 63))) != 0;

    /// <summary>Sets the bit; true if this call changed it.</summary>
    public bool TrySet(long page)
    {
        ref ulong word = ref _words[page >> 6];
        ulong bit = 1UL << (int)(page & 63);
        ulong old = Volatile.Read(ref word);
        while ((old & bit) == 0)
        {
            ulong seen = Interlocked.CompareExchange(ref word, old | bit, old);
            if (seen == old)
            {
                Interlocked.Increment(ref _count);
                return true;
            }
            old = seen;
        }
        return false;
    }

    /// <summary>Sets pages [first, first+count); returns how many were newly set.</summary>
    public long SetRange(long first, long count)
    {
        long n = 0;
        for (long p = first; p < first + count; p++)
            if (TrySet(p)) n++;
        return n;
    }

    /// <summary>First clear page at or after <paramref name="from"/>, or -1.</summary>
    public long NextClear(long from)
    {
        for (long w = from >> 6; w < _words.Length; w++)
        {
            ulong word = Volatile.Read(ref _words[w]);
            if (w == from >> 6) word |= (1UL << (int)(from & 63)) - 1; // ignore bits below from
            if (word != ulong.MaxValue)
            {
                long page = (w << 6) + System.Numerics.BitOperations.TrailingZeroCount(~word);
                return page < PageCount ? page : -1;
            }
        }
        return -1;
    }

    /// <summary>First set page at or after <paramref name="from"/>, or -1.</summary>
    public long NextSet(long from)
    {
        if (from >= PageCount) return -1;
        for (long w = from >> 6; w < _words.Length; w++)
        {
            ulong word = Volatile.Read(ref _words[w]);
            if (w == from >> 6) word &= ~((1UL << (int)(from & 63)) - 1); // ignore bits below from
            if (word != 0)
            {
                long page = (w << 6) + System.Numerics.BitOperations.TrailingZeroCount(word);
                return page < PageCount ? page : -1;
            }
        }
        return -1;
    }

    public void CopyTo(Span<byte> destination)
    {
        if (destination.Length < ByteLength) throw new ArgumentException("destination too short");
        for (int i = 0; i < ByteLength; i++)
            destination[i] = (byte)(Volatile.Read(ref _words[i >> 3]) >> ((i & 7) * 8));
    }

    /// <summary>ORs a serialized bitmap into this one (bits past PageCount are ignored).</summary>
    public void UnionWith(ReadOnlySpan<byte> bits)
    {
        if (bits.Length != ByteLength) throw new InvalidDataException($"bitmap of {bits.Length} bytes, expected {ByteLength}");
        for (long p = 0; p < PageCount; p++)
            if ((bits[(int)(p >> 3)] & (1 << (int)(p & 7))) != 0) TrySet(p);
    }

    /// <summary>Replaces the content with a serialized bitmap (single writer only: not atomic as a whole).</summary>
    public void ResetTo(ReadOnlySpan<byte> bits)
    {
        if (bits.Length != ByteLength) throw new InvalidDataException($"bitmap of {bits.Length} bytes, expected {ByteLength}");
        long count = 0;
        for (int w = 0; w < _words.Length; w++)
        {
            ulong v = 0;
            for (int b = 0; b < 8; b++)
            {
                int i = w * 8 + b;
                if (i < bits.Length) v |= (ulong)bits[i] << (b * 8);
            }
            if (w == _words.Length - 1 && (PageCount & 63) != 0) v &= (1UL << (int)(PageCount & 63)) - 1;
            Volatile.Write(ref _words[w], v);
            count += System.Numerics.BitOperations.PopCount(v);
        }
        Volatile.Write(ref _count, count);
    }
}
