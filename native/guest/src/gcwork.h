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
 *
 * Threads (gc.threads): with N > 1, N workers each run the workload on their own memory
 * with their own seed and private state, one pinned per vCPU. Each worker's order stays
 * deterministic; how far each gets relative to the others depends on vCPU scheduling.
 */
#ifndef GCWORK_H
#define GCWORK_H

#include <stddef.h>
#include <stdint.h>

#define GC_PAGE 4096u
/* gc.threads is capped here: the worker table is static (workers.c). */
#define GC_MAX_THREADS 64
/* The self-test corrupts memory when this heartbeat is printed (worker 0's, with threads). */
#define GC_SELFTEST_AT_SEQ 3
/* Room for a heartbeat's extra= fields (workload's, then disk's). */
#define GC_EXTRA_MAX 192

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
	uint64_t threads;     /* workers; 0 until main.c resolves it (online CPUs, at most 64) */
};

/* Shared state between the driver (main.c) and the running workload: one per worker,
 * touched only by that worker's thread once it runs (workers.c publishes its counters). */
struct gc {
	struct gc_opts o;
	uint64_t work;   /* monotonic work counter (unit chosen by the workload) */
	uint64_t vpass;  /* complete verification passes over the whole region */
	uint64_t errs;   /* mismatches seen (blocks, records or round checks) */
	int mismatch;    /* sticky: once set, every heartbeat says MISMATCH */
	int selftest_due; /* set by the driver; the workload applies it at a safe point */
	void *wl;        /* workload-private state: allocated by setup, never static, since
			  * every worker keeps its own */
	unsigned thread; /* worker index, named in GCERR lines when there are several */
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

/* The console lines and the heartbeat grid, shared by main.c's single loop and workers.c.
 * mib: the total over all workers. */
void gc_say_ready(const struct workload *wl, const struct gc_opts *o, uint64_t mib, uint64_t ready);
/* The workload's extra= fields, then gc.disk's when it is on. */
void gc_extra(const struct workload *wl, struct gc *g, char *buf, size_t n);
struct gc_hb {
	uint64_t seq;               /* heartbeats printed */
	uint64_t deadline;          /* the next slot on the 1 s grid, gc_now_ms */
	uint64_t last_t, last_work; /* at the previous heartbeat (or GCREADY): rate's base */
};
void gc_hb_start(struct gc_hb *h, uint64_t ready, uint64_t work);
/* Print the heartbeat due at h->deadline (now >= it) and move to the next slot. */
void gc_hb_say(struct gc_hb *h, const char *wl, uint64_t now, uint64_t work, int mismatch, const char *extra,
	       uint64_t vpass, uint64_t errs);

/* gc.threads > 1 (workers.c): o->threads workers of mib_each MiB each, heartbeats from the
 * calling thread. Returns only if the start failed (a GCERR line says why): the exit status. */
int gc_run_workers(const struct workload *wl, const struct gc_opts *o, uint64_t mib_each);

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
