using System.Buffers.Binary;

namespace GuideCopy.Guest;

/// <summary>
/// What a test guest run with <c>gc.disk</c> wrote on its disk (native/guest/src/disk.c, format in
/// docs/guest.md, "Disk"): a ring of records, each carrying the hash of the one before as that guest
/// read it back. Read from a raw image after the guest stopped, the ring tells whether one guest's
/// run of writes made it, in order, and nobody else's: a second writer (a guide clone that wrote the
/// real disk instead of its blank overlay) reads records it did not write, and breaks the chain.
/// </summary>
public static class GuestDiskRing
{
    public const long RingOffset = 8L << 20;
    public const int Slots = 256;
    public const int RecordSize = 4096;
    /// <summary>The reference area <c>gc.disk_ref</c> checks: written by the test, read by the guest, written by nobody.</summary>
    public const long ReferenceBytes = 4L << 20;
    private const ulong Magic = 0x31304b5349444347; // "GCDISK01", little-endian
    private const ulong SeqMultiplier = 0x100000001b3;

    /// <summary>Reads and checks the ring of a raw disk image (<c>qemu-img convert -O raw</c>).</summary>
    public static DiskRingCheck Read(string rawImage)
    {
        using var file = File.OpenRead(rawImage);
        var ring = new byte[Slots * RecordSize];
        file.Position = RingOffset;
        file.ReadExactly(ring);
        return Check(ring);
    }

    /// <summary>Checks a ring's bytes: the newest record's run of up to <see cref="Slots"/> predecessors, each whole and chained.</summary>
    public static DiskRingCheck Check(ReadOnlySpan<byte> ring)
    {
        var problems = new List<string>();
        long last = 0;
        for (int slot = 0; slot < Slots; slot++)
        {
            var r = ring.Slice(slot * RecordSize, RecordSize);
            if (BinaryPrimitives.ReadUInt64LittleEndian(r) == Magic)
            {
                last = Math.Max(last, (long)BinaryPrimitives.ReadUInt64LittleEndian(r[8..]));
            }
        }

        long first = Math.Max(1, last - Slots + 1);
        for (long seq = first; seq <= last; seq++)
        {
            var r = ring.Slice((int)(seq % Slots) * RecordSize, RecordSize);
            if (BinaryPrimitives.ReadUInt64LittleEndian(r) != Magic || (long)BinaryPrimitives.ReadUInt64LittleEndian(r[8..]) != seq)
            {
                problems.Add($"record {seq} is missing from slot {seq % Slots} (ring written up to {last})");
                continue;
            }

            if (!BodyIsIntact(r, seq))
            {
                problems.Add($"record {seq} has a changed body");
            }

            ulong prev = BinaryPrimitives.ReadUInt64LittleEndian(r[16..]);
            if (seq == 1 ? prev != 0 : seq > first && prev != Hash(ring.Slice((int)((seq - 1) % Slots) * RecordSize, RecordSize)))
            {
                problems.Add($"record {seq} was written after a read that was not record {seq - 1}: another writer was on this disk");
            }
        }

        return new DiskRingCheck(last, (int)(last - first + 1), problems);
    }

    private static bool BodyIsIntact(ReadOnlySpan<byte> record, long seq)
    {
        for (int i = 3; i < RecordSize / 8; i++)
        {
            if (BinaryPrimitives.ReadUInt64LittleEndian(record[(i * 8)..]) != Mix64((ulong)seq * SeqMultiplier + (ulong)i))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>FNV-1a 64, as disk.c hashes a record.</summary>
    private static ulong Hash(ReadOnlySpan<byte> bytes)
    {
        ulong h = 0xcbf29ce484222325;
        foreach (byte b in bytes)
        {
            h = (h ^ b) * 0x100000001b3;
        }

        return h;
    }

    /// <summary>splitmix64's finaliser, as gcwork.h's gc_mix64.</summary>
    private static ulong Mix64(ulong x)
    {
        x += 0x9e3779b97f4a7c15;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
        x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
        return x ^ (x >> 31);
    }
}
