namespace GuideCopy.Transport;

/// <summary>Constants and limits of the wire protocol. Every parser checks against these.</summary>
public static class Wire
{
    public const ushort Magic = 0x4347;        // "GC"
    public const uint ProtocolVersion = 4;      // 2: the welcome inside the MAC, sealed frames; 3: PackedPages; 4: Abandon
    public const int HeaderSize = 8;           // u16 magic, u8 type, u8 reserved(0), u32 payload length
    public const int NonceSize = 32;
    public const int MacSize = 32;
    public const int PagesHeaderSize = 16;     // u64 first page, u32 count, u8 origin, 3 reserved
    public const int MaxDemandPerFrame = 1024;
    public const int MaxErrorBytes = 1024;
    /// <summary>Device state per frame: QEMU writes its stream in 32 KiB buffers (QEMUFile's IO_BUF_SIZE).</summary>
    public const int MaxDeviceStateChunk = 64 * 1024;
    /// <summary>Batched page data per frame (a single page may be larger: 2 MiB hugetlbfs).</summary>
    public const int MaxBatchBytes = 1024 * 1024;
    /// <summary>A bitmap frame covers up to 2^31 pages (8 TiB of 4 KiB pages).</summary>
    public const int MaxBitmapBytes = 1 << 28;
    public const long MaxPageCount = (long)MaxBitmapBytes * 8;

    /// <summary>Largest payload accepted for a type, given the session's page size.</summary>
    public static int MaxPayload(FrameType type, int pageSize) => type switch
    {
        FrameType.ClientHello => 4 + 1 + 1 + NonceSize,
        FrameType.ServerChallenge => 4 + NonceSize,
        FrameType.ClientProof => MacSize,
        FrameType.ServerWelcome => 4 + 8 + 8 + MacSize,
        FrameType.ZeroMap or FrameType.Resume or FrameType.WarmVerdict => 8 + MaxBitmapBytes,
        FrameType.Demand => 4 + 8 * MaxDemandPerFrame,
        FrameType.Pages or FrameType.PackedPages => PagesHeaderSize + Math.Max(MaxBatchBytes, pageSize),
        FrameType.ZeroPages => PagesHeaderSize,
        FrameType.Heartbeat or FrameType.Complete or FrameType.Commit or FrameType.Done or FrameType.DoneAck or FrameType.Abandon => 0,
        FrameType.CommitDecision or FrameType.AbandonAck => 1,
        FrameType.DeviceState => MaxDeviceStateChunk,
        FrameType.DeviceStateEnd => 8,
        FrameType.Error => MaxErrorBytes,
        _ => -1,
    };

    /// <summary>Pages per frame for a page size.</summary>
    public static int PagesPerFrame(int pageSize) => Math.Max(1, MaxBatchBytes / pageSize);
}

/// <summary>The peer broke the protocol: the connection is closed, nothing else happens.</summary>
public sealed class ProtocolException(string message) : IOException(message);

/// <summary>The peer did not prove it knows the shared secret (or we did not).</summary>
public sealed class AuthenticationFailedException(string message) : IOException(message);
