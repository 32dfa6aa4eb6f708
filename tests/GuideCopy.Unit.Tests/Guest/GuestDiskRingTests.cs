using System.Buffers.Binary;
using System.Diagnostics;
using GuideCopy.Guest;
using GuideCopy.Lab;

namespace GuideCopy.Unit.Tests.Guest;

/// <summary>
/// The disk check of the guide test (GuideTests) rests on this reader: the real gcwork, run on the
/// host against a file, writes its ring; the reader must find it whole, and must name a record that
/// another writer changed. (O_DIRECT needs a disk file system: /var/tmp, not tmpfs.)
/// </summary>
[TestFixture]
public sealed class GuestDiskRingTests
{
    private string _image = "";

    [SetUp]
    public void SetUp()
    {
        _image = Path.Combine("/var/tmp", $"gc-disk-ring-{Guid.NewGuid():N}.img");
        using (var f = File.Create(_image))
        {
            f.SetLength(GuestDiskRing.RingOffset + GuestDiskRing.Slots * GuestDiskRing.RecordSize);
        }
    }

    [TearDown]
    public void TearDown() => File.Delete(_image);

    [Test]
    public void TheGuestsWritesReadBackWholeAndInOrder()
    {
        var (check, lastBeat) = RunGcwork(TimeSpan.FromSeconds(2.5));

        Assert.That(check.IsIntact, Is.True, string.Join("; ", check.Problems));
        Assert.That(lastBeat.Extra("disk_errs"), Is.EqualTo(0), lastBeat.Line);
        Assert.That(check.LastSeq, Is.GreaterThanOrEqualTo(lastBeat.Extra("disk_w")!.Value),
            "every write the guest counted is on the disk");
        Assert.That(check.LastSeq, Is.GreaterThan(3));
    }

    [Test]
    public void ASecondWritersRecordIsNamed()
    {
        var (check, _) = RunGcwork(TimeSpan.FromSeconds(1.5));
        Assume.That(check.LastSeq, Is.GreaterThan(2));

        // What a guide clone on the real disk would write next: the right layout and sequence
        // number, but after reading a blank disk (its predecessor's hash is not the real one's).
        var ring = ReadRing();
        long next = check.LastSeq + 1;
        var copy = ring.AsSpan((int)((check.LastSeq % GuestDiskRing.Slots) * GuestDiskRing.RecordSize), GuestDiskRing.RecordSize).ToArray();
        BinaryPrimitives.WriteUInt64LittleEndian(copy.AsSpan(8), (ulong)next);
        BinaryPrimitives.WriteUInt64LittleEndian(copy.AsSpan(16), 0xcbf29ce484222325);
        copy.CopyTo(ring.AsSpan((int)((next % GuestDiskRing.Slots) * GuestDiskRing.RecordSize)));

        var tampered = GuestDiskRing.Check(ring);
        Assert.That(tampered.Problems, Has.Some.Contains($"record {next}"));
        Assert.That(tampered.Problems, Has.Some.Contains("another writer"));
    }

    [Test]
    public void AChangedBodyIsNamed()
    {
        var (check, _) = RunGcwork(TimeSpan.FromSeconds(1.5));
        Assume.That(check.LastSeq, Is.GreaterThan(2));
        var ring = ReadRing();
        long victim = check.LastSeq - 1;
        ring[(int)((victim % GuestDiskRing.Slots) * GuestDiskRing.RecordSize) + 1000] ^= 0x40;

        var tampered = GuestDiskRing.Check(ring);
        Assert.That(tampered.Problems, Has.Some.Contains($"record {victim} has a changed body"));
        Assert.That(tampered.Problems, Has.Some.Contains($"record {check.LastSeq} was written after a read"));
    }

    private byte[] ReadRing()
    {
        using var f = File.OpenRead(_image);
        var ring = new byte[GuestDiskRing.Slots * GuestDiskRing.RecordSize];
        f.Position = GuestDiskRing.RingOffset;
        f.ReadExactly(ring);
        return ring;
    }

    /// <summary>gcwork with its disk on the file, stopped by SIGKILL after <paramref name="runFor"/>.</summary>
    private (DiskRingCheck Check, Heartbeat LastBeat) RunGcwork(TimeSpan runFor)
    {
        string gcwork = Path.Combine(NativeBuild.GuestImages, "gcwork");
        Assert.That(File.Exists(gcwork), $"{gcwork} is not built: run make -C native (scripts/setup does)");
        var psi = new ProcessStartInfo(gcwork) { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { "gc.workload=kv", "gc.mib=4", $"gc.disk={_image}", "gc.disk_ms=50" })
        {
            psi.ArgumentList.Add(a);
        }

        var beats = new List<Heartbeat>();
        using var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null && Heartbeat.TryParse(e.Data, DateTime.UtcNow) is { } h)
            {
                lock (beats) beats.Add(h);
            }
        };
        p.BeginOutputReadLine();
        Thread.Sleep(runFor);
        p.Kill();
        p.WaitForExit();
        lock (beats)
        {
            Assert.That(beats, Is.Not.Empty, "gcwork printed no heartbeat");
            return (GuestDiskRing.Read(_image), beats[^1]);
        }
    }
}
