/*
 * gcwork: the test guest's workload program (one static binary, three workloads).
 *
 * Every workload keeps its own memory plus a separate record of what that memory must
 * hold (per-page versions, per-record versions or per-block checksums), and verifies
 * the memory against that record as it runs. A page that reads as zeros or as an older
 * version of itself after a migration is exactly the failure a migration bug causes, so
 * that is what the check is built to catch.
 *
 * Determinism: the order in which a workload touches memory depends only on its own
 * state (seeded PRNG, counters), never on the clock. Only heartbeat printing looks at
 * the clock, and it touches no workload memory. A guide clone resumed from the same
 * paused state therefore touches the same pages in the same order as the real VM.
 */
#ifndef GCWORK_H
#define GCWORK_H

#include <stddef.h>
#include <stdint.h>

#define GC_PAGE 4096u

/* Knobs from the kernel command line (gc.KEY=VALUE). Defaults live in main.c. */
struct gc_opts {
	const char *workload; /* memtouch | sort | kv */
	uint64_t mib;         /* working memory, MiB */
	uint64_t seed;        /* PRNG seed; constant by default so every boot is identical */
	uint64_t ws_mib;      /* memtouch: moving working set, MiB */
	uint64_t ws_step_kib; /* memtouch: how far the working set moves per pass over it, KiB */
	uint64_t verify_every; /* memtouch: pages rewritten per page of the rolling verify sweep */
	uint64_t kv_put_pct;  /* kv: share of operations that are updates, percent */
	int selftest;         /* 0 none, 1 zero a page, 2 make a page stale */
	const char *disk;     /* block device to read and write (disk.c), NULL: none */
	int disk_ref;         /* byte the disk's reference area holds, -1: not checked */
	uint64_t disk_ms;     /* guest ms between disk steps */
};

/* Shared state between the driver (main.c) and the running workload. */
struct gc {
	struct gc_opts o;
	uint64_t work;   /* monotonic work counter (unit chosen by the workload) */
	uint64_t vpass;  /* complete verification passes over the whole region */
	uint64_t errs;   /* mismatches seen (blocks, records or round checks) */
	int mismatch;    /* sticky: once set, every heartbeat says MISMATCH */
	int selftest_due; /* set by the driver; the workload applies it at a safe point */
	void *wl;        /* workload-private state */
};

struct workload {
	const char *name;
	const char *unit; /* what one unit of `work` is, printed in GCREADY */
	/* Allocate and initialise memory; return 0 or print GCERR and return -1. */
	int (*setup)(struct gc *g);
	/* One short chunk of work (well under a millisecond of guest time is the aim on
	 * KVM, a few ms under TCG) plus its share of verification. */
	void (*step)(struct gc *g);
	/* Workload-specific `extra=` fields, comma separated k:v, no spaces. */
	void (*extra)(struct gc *g, char *buf, size_t n);
};

extern const struct workload wl_memtouch, wl_sort, wl_kv;

/* Report one mismatch: sets the sticky flag, prints a GCERR line (the first few only). */
void gc_mismatch(struct gc *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* printf to the console as one write(2), so lines never interleave mid-line. */
void gc_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *gc_alloc(struct gc *g, uint64_t bytes, const char *what);
uint64_t gc_now_ms(void);

/* gc.disk (disk.c): open the device, one read-back-and-write step, heartbeat fields. */
int gc_disk_open(struct gc *g, const char *path, int ref);
int gc_disk_enabled(void);
void gc_disk_step(struct gc *g);
void gc_disk_extra(char *buf, size_t n);

/* splitmix64: a full-period 64-bit generator with good mixing; also used as a hash. */
static inline uint64_t gc_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static inline uint64_t gc_rand(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ull;
	uint64_t x = *state;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The rolling verify sweep's pace (gc.verify_every): of `earned` units of work, how many
 * sweep items to check now; the remainder is carried in *debt so the pace is exact. */
static inline uint64_t gc_verify_budget(uint64_t *debt, uint64_t earned, uint64_t every)
{
	if (every == 0)
		every = 1;
	*debt += earned;
	uint64_t n = *debt / every;
	*debt -= n * every;
	return n;
}

#endif
