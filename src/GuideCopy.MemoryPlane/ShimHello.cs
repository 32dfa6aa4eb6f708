using System.Buffers.Binary;
using System.Text;

namespace GuideCopy.MemoryPlane;

/// <summary>
/// The shim's registration message (native/shim/shim.c, struct shim_hello), parsed as hostile
/// input: fixed 64-byte little-endian header followed by the RAM path.
/// </summary>
public readonly record struct ShimHello(
    ulong Base, ulong Length, int PageSize, ulong Ioctls, ulong FileOffset,
    int Pid, uint RegionId, bool IsResend, string RamPath)
{
    public const uint Magic = 0x31534347;      // "GCS1"
    public const uint AgentMagic = 0x31414347; // "GCA1"
    public const int HeaderSize = 64;
    public const int MaxPath = 4096;
    public const int MaxMessage = HeaderSize + MaxPath;
    public const uint CommandAck = 1, CommandRelease = 2;

    public static bool TryParse(ReadOnlySpan<byte> m, out ShimHello hello, out string error)
    {
        hello = default;
        if (m.Length < HeaderSize) { error = $"shim message of {m.Length} bytes, expected at least {HeaderSize}"; return false; }
        if (BinaryPrimitives.ReadUInt32LittleEndian(m) != Magic) { error = "bad shim magic"; return false; }
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(m[4..]);
        if (version != 1) { error = $"unsupported shim protocol version {version}"; return false; }
        ulong @base = BinaryPrimitives.ReadUInt64LittleEndian(m[8..]);
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(m[16..]);
        ulong pageSize = BinaryPrimitives.ReadUInt64LittleEndian(m[24..]);
        ulong ioctls = BinaryPrimitives.ReadUInt64LittleEndian(m[32..]);
        ulong fileOffset = BinaryPrimitives.ReadUInt64LittleEndian(m[40..]);
        uint pid = BinaryPrimitives.ReadUInt32LittleEndian(m[48..]);
        uint pathLen = BinaryPrimitives.ReadUInt32LittleEndian(m[52..]);
        uint region = BinaryPrimitives.ReadUInt32LittleEndian(m[56..]);
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(m[60..]);
        if (pageSize < 4096 || pageSize > (1UL << 30) || (pageSize & (pageSize - 1)) != 0) { error = $"bad page size {pageSize}"; return false; }
        if (length == 0 || length % pageSize != 0 || length > (1UL << 46)) { error = $"bad length {length}"; return false; }
        if (@base % pageSize != 0 || @base + length < @base) { error = $"bad base 0x{@base:x}"; return false; }
        if (fileOffset % pageSize != 0) { error = $"bad file offset {fileOffset}"; return false; }
        if (pathLen == 0 || pathLen > MaxPath || pathLen != (uint)(m.Length - HeaderSize)) { error = $"bad path length {pathLen}"; return false; }
        if (pid == 0 || pid > int.MaxValue) { error = $"bad pid {pid}"; return false; }
        var pathBytes = m.Slice(HeaderSize, (int)pathLen);
        if (pathBytes.Contains((byte)0)) { error = "NUL in path"; return false; }
        hello = new ShimHello(@base, length, (int)pageSize, ioctls, fileOffset, (int)pid, region,
            (flags & 1) != 0, Encoding.UTF8.GetString(pathBytes));
        error = "";
        return true;
    }

    /// <summary>Encodes a hello (tests and fakes; the real one comes from the C shim).</summary>
    public int Encode(Span<byte> into)
    {
        var path = Encoding.UTF8.GetBytes(RamPath);
        BinaryPrimitives.WriteUInt32LittleEndian(into, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(into[4..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(into[8..], Base);
        BinaryPrimitives.WriteUInt64LittleEndian(into[16..], Length);
        BinaryPrimitives.WriteUInt64LittleEndian(into[24..], (ulong)PageSize);
        BinaryPrimitives.WriteUInt64LittleEndian(into[32..], Ioctls);
        BinaryPrimitives.WriteUInt64LittleEndian(into[40..], FileOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(into[48..], (uint)Pid);
        BinaryPrimitives.WriteUInt32LittleEndian(into[52..], (uint)path.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(into[56..], RegionId);
        BinaryPrimitives.WriteUInt32LittleEndian(into[60..], IsResend ? 1u : 0u);
        path.CopyTo(into[HeaderSize..]);
        return HeaderSize + path.Length;
    }
}
