/*
 * gc.threads > 1: one worker thread per vCPU, so a multi-vCPU guest dirties memory from
 * every vCPU. Each worker is a whole workload instance (its own struct gc: gc.mib/N MiB,
 * seed + i, private state, self-check) pinned to one CPU; gc.selftest_corrupt and gc.disk
 * belong to worker 0 (disk.c keeps one device's state). The calling thread only prints
 * the heartbeats, on the same 1 s grid as the single loop (main.c).
 *
 * Sharing: a worker's struct gc is touched only by its own thread once it runs. After
 * every step the worker copies its counters into its `pub` block with relaxed atomic
 * stores and the heartbeat reads them with relaxed atomic loads: each counter only grows,
 * so the sum does too. The extra= fields come from worker 0's private state, so worker 0
 * formats them itself when a heartbeat asks (extra_req / extra_done, release / acquire).
 */
#define _GNU_SOURCE
#include "gcwork.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

/* How long the heartbeat waits between looks at worker 0's extra fields: a step is well
 * under a millisecond on KVM, a few ms under TCG. */
#define EXTRA_POLL_NS 100000

struct worker {
	/* Written by the worker after each step, read by the heartbeat. Its own cache lines,
	 * apart from the struct gc that the worker writes all the time. */
	struct {
		uint64_t work, vpass, errs;
		int mismatch;
		int selftest_req;    /* heartbeat -> worker 0: gc.selftest_corrupt is due */
		uint64_t extra_req;  /* heartbeat -> worker: the seq whose extra= is wanted */
		uint64_t extra_done; /* worker -> heartbeat: the seq whose extra= is in extra */
		char extra[GC_EXTRA_MAX];
	} pub __attribute__((aligned(64)));
	struct gc g __attribute__((aligned(64)));
	const struct workload *wl;
	int cpu;
};

static struct worker workers[GC_MAX_THREADS];
static pthread_barrier_t filled; /* every worker's setup done, and the heartbeat thread */
static int setup_failed;

/* Worker i runs on the (i mod k)-th of the k CPUs gcwork may use: CPU i % ncpu in the
 * guest, where every online CPU is allowed; the mask keeps a host run under taskset working. */
static int pick_cpus(unsigned n)
{
	cpu_set_t allowed;
	if (sched_getaffinity(0, sizeof allowed, &allowed)) {
		gc_say("GCERR cannot read the CPU affinity: %s\n", strerror(errno));
		return -1;
	}
	unsigned k = (unsigned)CPU_COUNT(&allowed);
	for (unsigned i = 0; i < n; i++) {
		unsigned want = i % k;
		int c = 0;
		for (;; c++)
			if (CPU_ISSET(c, &allowed) && want-- == 0)
				break;
		workers[i].cpu = c;
	}
	return 0;
}

static void publish(struct worker *w)
{
	__atomic_store_n(&w->pub.work, w->g.work, __ATOMIC_RELAXED);
	__atomic_store_n(&w->pub.vpass, w->g.vpass, __ATOMIC_RELAXED);
	__atomic_store_n(&w->pub.errs, w->g.errs, __ATOMIC_RELAXED);
	__atomic_store_n(&w->pub.mismatch, w->g.mismatch, __ATOMIC_RELAXED);
}

static int worker_setup(struct worker *w)
{
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(w->cpu, &one);
	/* Pinned before the fill, so the worker's memory is first touched from its own CPU. */
	if (sched_setaffinity(0, sizeof one, &one)) {
		gc_say("GCERR wl=%s thread=%u cannot pin to CPU %d: %s\n", w->wl->name, w->g.thread, w->cpu,
		       strerror(errno));
		return -1;
	}
	return w->wl->setup(&w->g);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct gc *g = &w->g;
	if (worker_setup(w))
		__atomic_store_n(&setup_failed, 1, __ATOMIC_RELAXED);
	publish(w);
	pthread_barrier_wait(&filled);
	/* The barrier orders every worker's store to setup_failed before this load. */
	if (__atomic_load_n(&setup_failed, __ATOMIC_RELAXED))
		return NULL;

	int disk = g->thread == 0 && gc_disk_enabled();
	uint64_t disk_due = gc_now_ms();
	for (;;) {
		if (__atomic_load_n(&w->pub.selftest_req, __ATOMIC_RELAXED))
			g->selftest_due = __atomic_exchange_n(&w->pub.selftest_req, 0, __ATOMIC_RELAXED);
		w->wl->step(g);
		if (disk) {
			uint64_t now = gc_now_ms();
			if (now >= disk_due) {
				gc_disk_step(g);
				disk_due = now + g->o.disk_ms;
			}
		}
		publish(w);
		uint64_t req = __atomic_load_n(&w->pub.extra_req, __ATOMIC_ACQUIRE);
		if (req != w->pub.extra_done) { /* only this thread writes extra_done */
			gc_extra(w->wl, g, w->pub.extra, sizeof w->pub.extra);
			__atomic_store_n(&w->pub.extra_done, req, __ATOMIC_RELEASE);
		}
	}
}

static void sleep_until_ms(uint64_t ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000 };
	/* gc_now_ms is CLOCK_MONOTONIC too, so waking here means now >= ms (EINTR: again). */
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* Worker 0's extra= fields for heartbeat seq; it formats them between two steps. */
static const char *extra_of_worker0(uint64_t seq)
{
	struct worker *w = &workers[0];
	__atomic_store_n(&w->pub.extra_req, seq, __ATOMIC_RELEASE);
	const struct timespec poll = { .tv_nsec = EXTRA_POLL_NS };
	while (__atomic_load_n(&w->pub.extra_done, __ATOMIC_ACQUIRE) != seq)
		nanosleep(&poll, NULL);
	return w->pub.extra;
}

int gc_run_workers(const struct workload *wl, const struct gc_opts *o, uint64_t mib_each)
{
	unsigned n = (unsigned)o->threads;
	if (pick_cpus(n))
		return 1;
	for (unsigned i = 0; i < n; i++) {
		struct worker *w = &workers[i];
		w->wl = wl;
		w->g = (struct gc){ .o = *o, .thread = i };
		w->g.o.mib = mib_each;
		w->g.o.seed = o->seed + i;
		if (i > 0) {
			w->g.o.selftest = 0;
			w->g.o.disk = NULL;
		}
	}
	if (o->disk && gc_disk_open(&workers[0].g, o->disk, o->disk_ref))
		return 1;

	pthread_barrier_init(&filled, NULL, n + 1);
	for (unsigned i = 0; i < n; i++) {
		pthread_t tid;
		int rc = pthread_create(&tid, NULL, worker_main, &workers[i]);
		if (rc) {
			gc_say("GCERR wl=%s cannot start worker thread %u: %s\n", wl->name, i, strerror(rc));
			return 1;
		}
	}
	pthread_barrier_wait(&filled);
	if (__atomic_load_n(&setup_failed, __ATOMIC_RELAXED))
		return 1;

	uint64_t ready = gc_now_ms();
	gc_say_ready(wl, o, mib_each * n, ready);
	uint64_t work = 0;
	for (unsigned i = 0; i < n; i++)
		work += __atomic_load_n(&workers[i].pub.work, __ATOMIC_RELAXED);
	struct gc_hb hb;
	gc_hb_start(&hb, ready, work);
	for (;;) {
		sleep_until_ms(hb.deadline);
		uint64_t now = gc_now_ms();
		int mismatch = 0;
		uint64_t vpass = UINT64_MAX, errs = 0;
		work = 0;
		for (unsigned i = 0; i < n; i++) {
			struct worker *w = &workers[i];
			work += __atomic_load_n(&w->pub.work, __ATOMIC_RELAXED);
			errs += __atomic_load_n(&w->pub.errs, __ATOMIC_RELAXED);
			mismatch |= __atomic_load_n(&w->pub.mismatch, __ATOMIC_RELAXED);
			/* A complete pass is one in which every worker verified all its memory. */
			uint64_t v = __atomic_load_n(&w->pub.vpass, __ATOMIC_RELAXED);
			if (v < vpass)
				vpass = v;
		}
		gc_hb_say(&hb, wl->name, now, work, mismatch, extra_of_worker0(hb.seq + 1), vpass, errs);
		if (o->selftest && hb.seq == GC_SELFTEST_AT_SEQ)
			__atomic_store_n(&workers[0].pub.selftest_req, o->selftest, __ATOMIC_RELAXED);
	}
}
