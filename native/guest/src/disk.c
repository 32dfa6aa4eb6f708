/*
 * gc.disk=DEVICE: besides its memory workload, the guest reads and writes a block device, so
 * a test can tell whose writes reached the disk after a migration (docs/guest.md, "Disk").
 *
 * A ring of GC_DISK_SLOTS records of 4 KiB at GC_DISK_RING_OFFSET. Each step reads back the
 * record written last (O_DIRECT: from the disk, not the page cache) and compares it with the
 * hash it had when written, then writes the next record, which carries that hash: the records
 * on disk form a chain that only this guest's own run of writes produces. A second writer (a
 * guide clone writing the real disk) reads what it did not write, and its records break the
 * chain. With gc.disk_ref=BYTE the step also reads one 4 KiB block of the first
 * GC_DISK_REF_BYTES, which the test filled with BYTE before boot and nobody writes.
 *
 * Record: u64 magic GC_DISK_MAGIC, u64 seq (1, 2, ...), u64 hash of record seq-1 as read back
 * (0 for seq 1), then words gc_mix64(seq * GC_DISK_SEQ_MUL + i). Little-endian. The hash is
 * FNV-1a 64 over the whole 4 KiB.
 */
#define _GNU_SOURCE
#include "gcwork.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GC_DISK_MAGIC 0x31304b5349444347ull /* "GCDISK01" */
#define GC_DISK_RING_OFFSET (8ull << 20)
#define GC_DISK_SLOTS 256u
#define GC_DISK_REF_BYTES (4ull << 20)
#define GC_DISK_SEQ_MUL 0x100000001b3ull

static struct {
	int fd;
	uint64_t seq;       /* last record written, 0: none */
	uint64_t last_hash; /* its hash when written */
	uint64_t writes, reads, errs;
	int ref;            /* gc.disk_ref byte, -1: no reference area */
	uint8_t *rec, *back; /* 4 KiB, aligned for O_DIRECT */
} D = { .fd = -1, .ref = -1 };

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static int io_all(int write_, uint8_t *buf, uint64_t off)
{
	ssize_t n = write_ ? pwrite(D.fd, buf, GC_PAGE, (off_t)off) : pread(D.fd, buf, GC_PAGE, (off_t)off);
	return n == (ssize_t)GC_PAGE ? 0 : -1;
}

int gc_disk_open(struct gc *g, const char *path, int ref)
{
	/* O_DIRECT: reads come from the disk; O_DSYNC: a counted write is on the disk. */
	D.fd = open(path, O_RDWR | O_DIRECT | O_DSYNC);
	if (D.fd < 0) {
		gc_say("GCERR cannot open gc.disk=%s: %s\n", path, strerror(errno));
		return -1;
	}
	if (posix_memalign((void **)&D.rec, GC_PAGE, GC_PAGE) || posix_memalign((void **)&D.back, GC_PAGE, GC_PAGE)) {
		gc_say("GCERR cannot allocate the disk buffers\n");
		return -1;
	}
	D.ref = ref;
	(void)g;
	return 0;
}

int gc_disk_enabled(void)
{
	return D.fd >= 0;
}

void gc_disk_step(struct gc *g)
{
	if (D.seq > 0) {
		uint64_t off = GC_DISK_RING_OFFSET + (D.seq % GC_DISK_SLOTS) * GC_PAGE;
		D.reads++;
		if (io_all(0, D.back, off))
			gc_mismatch(g, "disk: read of record %" PRIu64 " failed: %s", D.seq, strerror(errno)), D.errs++;
		else if (fnv1a(D.back, GC_PAGE) != D.last_hash)
			gc_mismatch(g, "disk: record %" PRIu64 " reads back changed", D.seq), D.errs++;
	}
	if (D.ref >= 0) {
		uint64_t off = (D.seq * 7919u * GC_PAGE) % GC_DISK_REF_BYTES;
		D.reads++;
		if (io_all(0, D.back, off))
			gc_mismatch(g, "disk: read at %" PRIu64 " failed: %s", off, strerror(errno)), D.errs++;
		else
			for (size_t i = 0; i < GC_PAGE; i++)
				if (D.back[i] != (uint8_t)D.ref) {
					gc_mismatch(g, "disk: byte %" PRIu64 " is %#x, want %#x", off + i, D.back[i], D.ref);
					D.errs++;
					break;
				}
	}

	uint64_t seq = D.seq + 1, *w = (uint64_t *)D.rec;
	w[0] = GC_DISK_MAGIC;
	w[1] = seq;
	w[2] = D.seq > 0 ? D.last_hash : 0;
	for (size_t i = 3; i < GC_PAGE / 8; i++)
		w[i] = gc_mix64(seq * GC_DISK_SEQ_MUL + i);
	if (io_all(1, D.rec, GC_DISK_RING_OFFSET + (seq % GC_DISK_SLOTS) * GC_PAGE)) {
		gc_mismatch(g, "disk: write of record %" PRIu64 " failed: %s", seq, strerror(errno));
		D.errs++;
		return;
	}
	D.seq = seq;
	D.last_hash = fnv1a(D.rec, GC_PAGE);
	D.writes++;
}

void gc_disk_extra(char *buf, size_t n)
{
	snprintf(buf, n, ",disk_w:%" PRIu64 ",disk_r:%" PRIu64 ",disk_errs:%" PRIu64, D.writes, D.reads, D.errs);
}
