using System.Buffers.Binary;
using CsCheck;
using K4os.Compression.LZ4;
using GuideCopy.Transport;

namespace GuideCopy.Unit.Tests.Transport;

/// <summary>
/// Every parser a page-lane peer reaches, fuzzed (<see cref="Fuzz"/>): the frame header, each
/// frame type's body, the handshake's three messages, and the shim's hello. A parser either
/// accepts, and its result holds what the code after it relies on, or throws
/// <see cref="ProtocolException"/> (the lane is dropped); nothing else may escape.
/// </summary>
[Category("Fuzz")]
public class WireFuzzTests
{
    private static readonly FrameType[] Known = Enum.GetValues<FrameType>();

    private static bool Rejects(Action parse)
    {
        try
        {
            parse();
            return true;
        }
        catch (ProtocolException)
        {
            return false;
        }
    }

    private static readonly Gen<(byte[] Header, int PageSize, bool Authenticated, bool Sealed)> Headers =
        Gen.Select(Gen.Int[0, Known.Length - 1], Gen.Int[0, int.MaxValue], Gen.Bool, Gen.Bool, Gen.OneOf(Gen.Const(4096), Gen.Const(2 << 20)),
            (t, len, auth, isSealed, pageSize) =>
            {
                var type = Known[t];
                int max = Wire.MaxPayload(type, pageSize);
                int limit = auth ? max : Math.Min(max, Wire.MaxErrorBytes - FrameSeal.TagSize);
                var h = new byte[Wire.HeaderSize];
                BinaryPrimitives.WriteUInt16LittleEndian(h, Wire.Magic);
                h[2] = (byte)type;
                BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(4), (uint)((limit == 0 ? 0 : len % (limit + 1)) + (isSealed ? FrameSeal.TagSize : 0)));
                return (h, pageSize, auth, isSealed);
            });

    [Test]
    public void FrameHeader() => Fuzz.Run("frame header",
        Headers.SelectMany(x => Fuzz.Mutated(Gen.Const(x.Header)).Select(h => (Header: h, x.PageSize, x.Authenticated, x.Sealed))),
        x => Rejects(() =>
        {
            if (x.Header.Length < Wire.HeaderSize) throw new ProtocolException("short"); // the reader reads exactly 8 bytes
            var (type, length) = FrameCodec.ReadHeader(x.Header, x.PageSize, x.Authenticated, x.Sealed);
            int payload = length - (x.Sealed ? FrameSeal.TagSize : 0);
            Assert.That(payload, Is.InRange(0, Wire.MaxPayload(type, x.PageSize)));
            if (!x.Authenticated) Assert.That(length, Is.LessThanOrEqualTo(Wire.MaxErrorBytes), "an unauthenticated peer made us read more than a handshake");
        }),
        x => Fuzz.Hex(x.Header));

    /// <summary>(page count, payload) of valid Pages frames: up to 4 pages of 4 KiB inside the session.</summary>
    private static readonly Gen<(long PageCount, byte[] Payload)> PagesFrames =
        Gen.Select(Gen.Long[1, Wire.MaxPageCount], Gen.Long[0, long.MaxValue], Gen.Int[1, 4], Gen.Int[1, 4], (pages, f, c, origin) =>
        {
            int count = (int)Math.Min(c, pages);
            long first = f % (pages - count + 1);
            var p = new byte[Wire.PagesHeaderSize + count * 4096];
            FrameCodec.WritePagesHeader(p, first, count, (PageOrigin)origin);
            return (pages, p);
        });

    [Test]
    public void PagesBody() => Fuzz.Run("pages body",
        PagesFrames.SelectMany(v => Fuzz.Mutated(Gen.Const(v.Payload)).Select(p => (v.PageCount, Payload: p))),
        x => Rejects(() =>
        {
            var h = FrameCodec.ReadPages(x.Payload, 4096, x.PageCount);
            // What PageInstaller.Install relies on: the whole run inside the mapping, the data all there.
            Assert.That(h.First, Is.GreaterThanOrEqualTo(0));
            Assert.That(h.Count, Is.GreaterThan(0));
            Assert.That(h.First + h.Count, Is.LessThanOrEqualTo(x.PageCount));
            Assert.That(x.Payload.Length, Is.EqualTo(Wire.PagesHeaderSize + h.Count * 4096L));
            Assert.That(h.Origin, Is.InRange(PageOrigin.Demand, PageOrigin.Warm));
        }),
        x => $"{x.PageCount} pages: {Fuzz.Hex(x.Payload)}");

    /// <summary>(page count, payload, the pages it holds) of valid PackedPages frames: 1-4 pages of compressible content, LZ4-packed.</summary>
    private static readonly Gen<(long PageCount, byte[] Payload, byte[] Pages)> PackedFrames =
        Gen.Select(PagesFrames, Gen.Byte, (v, fill) =>
        {
            var pages = v.Payload[Wire.PagesHeaderSize..];
            for (int i = 0; i < pages.Length; i++) pages[i] = (byte)(i % 64 < 8 ? fill ^ i : fill);
            var block = new byte[LZ4Codec.MaximumOutputSize(pages.Length)];
            int n = LZ4Codec.Encode(pages, block);
            byte[] payload = [.. v.Payload[..Wire.PagesHeaderSize], .. block[..n]];
            return (v.PageCount, payload, pages);
        });

    [Test]
    public void PackedPagesBody() => Fuzz.Run("packed pages body",
        PackedFrames.SelectMany(v => Fuzz.Mutated(Gen.Const(v.Payload)).Select(p => (v.PageCount, Payload: p, v.Pages))),
        x => Rejects(() =>
        {
            var into = new byte[Wire.MaxBatchBytes];
            var h = FrameCodec.ReadPackedPages(x.Payload, 4096, x.PageCount, into);
            // What the install after it relies on: the run inside the mapping and exactly Count pages decoded.
            Assert.That(h.Count, Is.GreaterThan(0));
            Assert.That(h.First + h.Count, Is.LessThanOrEqualTo(x.PageCount));
            Assert.That(h.Origin, Is.InRange(PageOrigin.Demand, PageOrigin.Warm));
        }),
        x => $"{x.PageCount} pages: {Fuzz.Hex(x.Payload)}");

    [Test]
    public void ZeroPagesBody() => Fuzz.Run("zero-pages body",
        PagesFrames.SelectMany(v => Fuzz.Mutated(Gen.Const(v.Payload[..Wire.PagesHeaderSize])).Select(p => (v.PageCount, Payload: p))),
        x => Rejects(() =>
        {
            var h = FrameCodec.ReadZeroPages(x.Payload, x.PageCount);
            Assert.That(h.First, Is.GreaterThanOrEqualTo(0));
            Assert.That(h.First + h.Count, Is.LessThanOrEqualTo(x.PageCount));
        }),
        x => $"{x.PageCount} pages: {Fuzz.Hex(x.Payload)}");

    [Test]
    public void DemandBody() => Fuzz.Run("demand body",
        Gen.Select(Gen.Long[1, Wire.MaxPageCount], Gen.Long[0, long.MaxValue].Array[1, 8], (pages, ps) =>
            (pages, ps.Select(p => p % pages).ToArray()))
            .SelectMany(v =>
            {
                var p = new byte[FrameCodec.DemandSize(v.Item2.Length)];
                FrameCodec.WriteDemand(p, v.Item2);
                return Fuzz.Mutated(Gen.Const(p)).Select(m => (PageCount: v.pages, Payload: m));
            }),
        x => Rejects(() =>
        {
            int n = FrameCodec.ReadDemandCount(x.Payload);
            Assert.That(n, Is.InRange(1, Wire.MaxDemandPerFrame));
            for (int i = 0; i < n; i++) Assert.That(FrameCodec.DemandPage(x.Payload, i, x.PageCount), Is.InRange(0, x.PageCount - 1));
        }),
        x => $"{x.PageCount} pages: {Fuzz.Hex(x.Payload)}");

    [Test]
    public void BitmapBody() => Fuzz.Run("zero map / resume body",
        Gen.Long[1, 5000].SelectMany(pages =>
        {
            var b = new PageBitmap(pages);
            for (long i = 0; i < pages; i += 3) b.TrySet(i);
            return Fuzz.Mutated(Gen.Const(FrameCodec.EncodeBitmap(b))).Select(m => (PageCount: pages, Payload: m));
        }),
        x => Rejects(() =>
        {
            var bits = FrameCodec.ReadBitmap(x.Payload, x.PageCount, "bitmap");
            var into = new PageBitmap(x.PageCount);
            into.ResetTo(bits); // what the pager and the page server do with it
            Assert.That(into.Count, Is.LessThanOrEqualTo(x.PageCount));
        }),
        x => $"{x.PageCount} pages: {Fuzz.Hex(x.Payload)}");

    [Test]
    public void CommitDecisionBody() => Fuzz.Run("commit decision",
        Fuzz.Mutated(Gen.OneOf(Gen.Const(new byte[] { 1 }), Gen.Const(new byte[] { 2 }))),
        p => Rejects(() => Assert.That(FrameCodec.ReadCommitDecision(p), Is.AnyOf(CommitDecision.Committed, CommitDecision.RolledBack))),
        Fuzz.Hex);

    [Test]
    public void ClientHello() => Fuzz.Run("client hello",
        Gen.Select(Gen.Int[1, 3], Gen.Int[1, 2], Gen.Byte.Array[Wire.NonceSize], (lane, prot, nonce) =>
        {
            var h = new byte[Handshake.HelloLength];
            BinaryPrimitives.WriteUInt32LittleEndian(h, Wire.ProtocolVersion);
            h[4] = (byte)lane;
            h[5] = (byte)prot;
            nonce.CopyTo(h, 6);
            return h;
        }).SelectMany(v => Fuzz.Mutated(Gen.Const(v))),
        h => Rejects(() =>
        {
            var (version, lane, protection) = Handshake.ParseHello(h);
            if (version != Wire.ProtocolVersion) throw new ProtocolException("old client: answered in words, then closed");
            Assert.That(lane, Is.AnyOf(Lane.Demand, Lane.Push, Lane.Control));
            Assert.That(protection, Is.AnyOf(LaneProtection.Sealed, LaneProtection.ClearText));
            Assert.That(h, Has.Length.EqualTo(Handshake.HelloLength));
        }),
        Fuzz.Hex);

    [Test]
    public void ServerChallenge() => Fuzz.Run("server challenge",
        Gen.Byte.Array[Wire.NonceSize].Select(n => (byte[])[.. BitConverter.GetBytes(Wire.ProtocolVersion), .. n]).SelectMany(v => Fuzz.Mutated(Gen.Const(v))),
        c => Rejects(() => Assert.That(Handshake.ParseChallenge(c).Length, Is.EqualTo(Wire.NonceSize))),
        Fuzz.Hex);

    [Test]
    public void ServerWelcome() => Fuzz.Run("server welcome",
        Gen.Select(Gen.Int[12, 30], Gen.Long[1, Wire.MaxPageCount], Gen.ULong, (shift, pages, session) =>
        {
            var w = new byte[20 + Wire.MacSize];
            BinaryPrimitives.WriteUInt32LittleEndian(w, 1u << shift);
            BinaryPrimitives.WriteUInt64LittleEndian(w.AsSpan(4), (ulong)pages);
            BinaryPrimitives.WriteUInt64LittleEndian(w.AsSpan(12), session);
            return w;
        }).SelectMany(v => Fuzz.Mutated(Gen.Const(v))),
        w => Rejects(() =>
        {
            var s = Handshake.ParseWelcome(w);
            Assert.That(s.PageSize, Is.InRange(4096, 1 << 30));
            Assert.That(s.PageSize & (s.PageSize - 1), Is.Zero);
            Assert.That(s.PageCount, Is.InRange(1, Wire.MaxPageCount));
        }),
        Fuzz.Hex);

    [Test]
    public void ShimHelloMessage() => Fuzz.Run("shim hello",
        Gen.Select(Gen.Int[12, 21], Gen.Long[1, 1 << 20], Gen.Long[0, 1 << 20], Gen.Int[1, int.MaxValue], Gen.Bool,
            (shift, pages, at, pid, resend) =>
            {
                long size = 1L << shift;
                var hello = new ShimHello((ulong)(at * size), (ulong)(pages * size), (int)size, 0x1c, 0, pid, 0, resend, "/dev/shm/libvirt-ram/x/pc.ram");
                var buf = new byte[ShimHello.MaxMessage];
                return buf[..hello.Encode(buf)];
            }).SelectMany(v => Fuzz.Mutated(Gen.Const(v))),
        m =>
        {
            // Never throws: a refused hello is a message to the log, and the listener waits for the next peer.
            if (!ShimHello.TryParse(m, out var h, out string error))
            {
                Assert.That(error, Is.Not.Empty);
                return false;
            }

            Assert.That(h.Length % (ulong)h.PageSize, Is.Zero);
            Assert.That(h.Base + h.Length, Is.GreaterThan(h.Base), "the region wraps around");
            Assert.That(h.RamPath, Is.Not.Empty);
            Assert.That(h.Pid, Is.GreaterThan(0));
            return true;
        },
        Fuzz.Hex);
}
