using System.Buffers.Binary;
using CsCheck;

namespace GuideCopy.Unit.Tests;

/// <summary>
/// Property-based fuzzing with CsCheck (generation and shrinking from one PCG stream): every
/// input starts as a valid message of its format and is then mutated (bits flipped, fields set
/// to boundary values, cut short, grown), so most inputs get past the first checks and reach
/// the later ones. A parser must accept (and then its result must hold its invariants) or
/// reject with its own exception; anything else is a bug, and CsCheck shrinks the input and
/// prints the seed that replays it.
///
/// Per run: <see cref="Iterations"/> inputs per parser (GUIDECOPY_FUZZ_ITER, default 20 000)
/// with a fresh random seed each run (GUIDECOPY_FUZZ_SEED replays one); scripts/fuzz runs
/// millions (docs/security.md, "Fuzzing").
/// </summary>
public static class Fuzz
{
    public static long Iterations => long.TryParse(Environment.GetEnvironmentVariable("GUIDECOPY_FUZZ_ITER"), out long n) ? n : 20_000;

    private static string? Seed => Environment.GetEnvironmentVariable("GUIDECOPY_FUZZ_SEED") is { Length: > 0 } s ? s : null;

    private static readonly ulong[] Boundaries =
    [
        0, 1, 2, 7, 8, 15, 16, 4095, 4096, 4097, 0x7f, 0x80, 0xff, 0x100, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff,
        0x1_0000_0000, 0x7fff_ffff_ffff_ffff, 0x8000_0000_0000_0000, 0xffff_ffff_ffff_ffff,
    ];

    /// <summary>One mutation of a byte string.</summary>
    private static readonly Gen<Func<byte[], byte[]>> Mutation = Gen.Frequency(
        (4, Gen.Int[0, int.MaxValue].Select(Gen.Int[0, 7], (p, bit) => (Func<byte[], byte[]>)(b =>
        {
            if (b.Length == 0) return b;
            var c = (byte[])b.Clone();
            c[p % c.Length] ^= (byte)(1 << bit);
            return c;
        }))),
        (4, Gen.Int[0, int.MaxValue].Select(Gen.Int[0, Boundaries.Length - 1], Gen.Int[0, 2], (p, v, width) => (Func<byte[], byte[]>)(b =>
        {
            int size = width switch { 0 => 1, 1 => 4, _ => 8 };
            if (b.Length < size) return b;
            var c = (byte[])b.Clone();
            int at = p % (c.Length - size + 1);
            ulong value = Boundaries[v];
            if (size == 1) c[at] = (byte)value;
            else if (size == 4) BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(at), (uint)value);
            else BinaryPrimitives.WriteUInt64LittleEndian(c.AsSpan(at), value);
            return c;
        }))),
        (2, Gen.Int[0, int.MaxValue].Select(p => (Func<byte[], byte[]>)(b => b.Length == 0 ? b : b[..(p % b.Length)]))),
        (1, Gen.Byte.Array[1, 64].Select(extra => (Func<byte[], byte[]>)(b => [.. b, .. extra]))),
        (1, Gen.Byte.Array[0, 256].Select(random => (Func<byte[], byte[]>)(_ => random))));

    /// <summary>Valid messages, then 0 (a sixth of the inputs: the happy path stays covered) to 3 mutations.</summary>
    public static Gen<byte[]> Mutated(Gen<byte[]> valid) =>
        valid.Select(Gen.Frequency((1, Gen.Const(0)), (5, Gen.Int[1, 3])), Mutation.Array[3], (v, n, ms) =>
        {
            for (int i = 0; i < n; i++) v = ms[i](v);
            return v;
        });

    /// <summary>Runs <paramref name="check"/> on <see cref="Iterations"/> inputs; counts and prints what it did.</summary>
    public static void Run<T>(string name, Gen<T> gen, Func<T, bool> check, Func<T, string>? print = null, long iterations = 0)
    {
        long inputs = 0, accepted = 0;
        gen.Sample(x =>
        {
            Interlocked.Increment(ref inputs);
            if (check(x)) Interlocked.Increment(ref accepted);
        }, seed: Seed, iter: iterations > 0 ? iterations : Iterations, threads: 1, print: print);
        TestContext.Out.WriteLine($"fuzz {name}: {inputs} inputs, {accepted} accepted, {inputs - accepted} rejected");
        Assert.That(accepted, Is.GreaterThan(0), $"{name}: no input was accepted: the generator does not reach past the first check");
        Assert.That(accepted, Is.LessThan(inputs), $"{name}: every input was accepted: the mutations do not reach the checks");
    }

    public static string Hex(byte[] b) => Convert.ToHexString(b.Length > 96 ? b[..96] : b) + (b.Length > 96 ? $"... ({b.Length} bytes)" : "");
}
