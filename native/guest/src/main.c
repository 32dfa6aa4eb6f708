/*
 * gcwork driver: parses gc.* knobs, runs the chosen workload in short steps and prints
 * one heartbeat line per second on the console. With gc.threads > 1, workers.c runs the
 * workers and this file only lends it the console lines.
 *
 * Usage (normally from /init, which passes the gc.* words of /proc/cmdline):
 *   gcwork gc.workload=kv gc.mib=128 ...
 */
#define _GNU_SOURCE
#include "gcwork.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* Default working memory. 256 MiB fills in 0.7-3 s under TCG and leaves room in a
 * 512 MiB guest; a smaller guest gets less (see default_mib). */
#define DEFAULT_MIB 256
/* The least working memory of one workload instance (each worker's, with gc.threads). */
#define MIN_MIB 4
/* At most this many GCERR lines, from all workers together (they share the console);
 * the count goes on in the heartbeat's errs field. */
#define MAX_ERR_LINES 8

static const char *wl_name = "?";
static uint64_t err_lines; /* GCERR lines asked for so far, by any worker */

uint64_t gc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t boot_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t start_ms;

void gc_say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof buf) {
		n = sizeof buf - 1;
		buf[n - 1] = '\n';
	}
	/* One write per line: the serial console must never show half a heartbeat. */
	for (char *p = buf; n > 0;) {
		ssize_t w = write(1, p, (size_t)n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		p += w;
		n -= (int)w;
	}
}

void gc_mismatch(struct gc *g, const char *fmt, ...)
{
	g->mismatch = 1;
	g->errs++;
	if (__atomic_add_fetch(&err_lines, 1, __ATOMIC_RELAXED) > MAX_ERR_LINES)
		return;
	char what[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	/* With several workers, idx and off are offsets in the named worker's own memory. */
	if (g->o.threads > 1)
		gc_say("GCERR wl=%s t_ms=%" PRIu64 " thread=%u %s\n", wl_name, gc_now_ms() - start_ms, g->thread,
		       what);
	else
		gc_say("GCERR wl=%s t_ms=%" PRIu64 " %s\n", wl_name, gc_now_ms() - start_ms, what);
}

void *gc_alloc(struct gc *g, uint64_t bytes, const char *what)
{
	(void)g;
	/* Anonymous private memory: untouched pages stay unbacked until the fill. */
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		gc_say("GCERR wl=%s cannot allocate %s (%" PRIu64 " KiB): %s\n", wl_name, what,
		       bytes >> 10, strerror(errno));
		return NULL;
	}
	return p;
}

/* MemTotal in MiB, or 0 if /proc is not there. */
static uint64_t mem_total_mib(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	if (!f)
		return 0;
	char line[128];
	unsigned long long kib = 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
			break;
	fclose(f);
	return kib >> 10;
}

/* 256 MiB, or less when the guest is small: 5/8 of MemTotal in whole 64 MiB steps, so a
 * 512 MiB guest gets 256 and a 256 MiB guest 128, leaving room for the side arrays and
 * the kernel. MemTotal, not MemAvailable: it is the same on every boot of a given RAM
 * size, so the default (and with it every page touched) is too. */
static uint64_t default_mib(void)
{
	uint64_t total = mem_total_mib();
	if (total == 0)
		return DEFAULT_MIB;
	uint64_t fit = total * 5 / 8 / 64 * 64;
	if (fit < 16)
		fit = 16;
	return fit < DEFAULT_MIB ? fit : DEFAULT_MIB;
}

static int parse_u64(const char *key, const char *v, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 0);
	if (errno || end == v || *end) {
		gc_say("GCERR bad value %s=%s (want a number)\n", key, v);
		return -1;
	}
	*out = x;
	return 0;
}

static int parse_args(int argc, char **argv, struct gc_opts *o)
{
	int mib_given = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "gc.", 3) != 0) {
			gc_say("GCERR unexpected argument %s (want gc.KEY=VALUE)\n", a);
			return -1;
		}
		const char *eq = strchr(a, '=');
		if (!eq) {
			gc_say("GCERR %s has no value (want gc.KEY=VALUE)\n", a);
			return -1;
		}
		size_t klen = (size_t)(eq - a);
		const char *v = eq + 1;
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(a, k, klen) == 0)
		int rc = 0;
		if (KEY("gc.workload"))
			o->workload = v;
		else if (KEY("gc.mib"))
			rc = parse_u64("gc.mib", v, &o->mib), mib_given = 1;
		else if (KEY("gc.threads"))
			rc = parse_u64("gc.threads", v, &o->threads);
		else if (KEY("gc.seed"))
			rc = parse_u64("gc.seed", v, &o->seed);
		else if (KEY("gc.ws"))
			rc = parse_u64("gc.ws", v, &o->ws_mib);
		else if (KEY("gc.ws_step"))
			rc = parse_u64("gc.ws_step", v, &o->ws_step_kib);
		else if (KEY("gc.verify_every"))
			rc = parse_u64("gc.verify_every", v, &o->verify_every);
		else if (KEY("gc.kv_put"))
			rc = parse_u64("gc.kv_put", v, &o->kv_put_pct);
		else if (KEY("gc.disk"))
			o->disk = v;
		else if (KEY("gc.disk_ms"))
			rc = parse_u64("gc.disk_ms", v, &o->disk_ms);
		else if (KEY("gc.disk_ref")) {
			uint64_t b;
			rc = parse_u64("gc.disk_ref", v, &b);
			if (!rc && b > 255) {
				gc_say("GCERR bad value gc.disk_ref=%s (want a byte)\n", v);
				return -1;
			}
			o->disk_ref = (int)b;
		} else if (KEY("gc.selftest_corrupt")) {
			if (!strcmp(v, "0"))
				o->selftest = 0;
			else if (!strcmp(v, "1") || !strcmp(v, "zero"))
				o->selftest = 1;
			else if (!strcmp(v, "stale"))
				o->selftest = 2;
			else {
				gc_say("GCERR bad value gc.selftest_corrupt=%s (want 0, 1/zero or stale)\n", v);
				return -1;
			}
		} else {
			/* Fail loudly: a mistyped knob would silently change an experiment. */
			gc_say("GCERR unknown key %.*s\n", (int)klen, a);
			return -1;
		}
#undef KEY
		if (rc)
			return -1;
	}
	if (!mib_given)
		o->mib = default_mib();
	if (o->mib < MIN_MIB) {
		gc_say("GCERR gc.mib=%" PRIu64 " is too small (minimum %d)\n", o->mib, MIN_MIB);
		return -1;
	}
	if (o->threads == 0) {
		/* One worker per vCPU: a multi-vCPU guest then dirties memory from all of them. */
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		o->threads = cpus > 0 ? (uint64_t)cpus : 1;
	}
	if (o->threads > GC_MAX_THREADS)
		o->threads = GC_MAX_THREADS;
	if (o->kv_put_pct > 100) {
		gc_say("GCERR gc.kv_put=%" PRIu64 " is not a percentage\n", o->kv_put_pct);
		return -1;
	}
	return 0;
}

void gc_say_ready(const struct workload *wl, const struct gc_opts *o, uint64_t mib, uint64_t ready)
{
	gc_say("GCREADY wl=%s mib=%" PRIu64 " seed=%#" PRIx64 " unit=%s fill_ms=%" PRIu64 " boot_ms=%" PRIu64
	       " threads=%" PRIu64 "\n",
	       wl->name, mib, o->seed, wl->unit, ready - start_ms, boot_ms(), o->threads);
}

void gc_extra(const struct workload *wl, struct gc *g, char *buf, size_t n)
{
	wl->extra(g, buf, n);
	if (gc_disk_enabled()) {
		size_t used = strlen(buf);
		gc_disk_extra(buf + used, n - used);
	}
}

/* Heartbeats sit on a 1 s grid from GCREADY. A late one (guest paused, host busy) is
 * printed once and the grid skips the missed slots, so seq counts lines, and rate is
 * normalised to work per second over the real interval. */
void gc_hb_start(struct gc_hb *h, uint64_t ready, uint64_t work)
{
	*h = (struct gc_hb){ .deadline = ready + 1000, .last_t = ready, .last_work = work };
}

void gc_hb_say(struct gc_hb *h, const char *wl, uint64_t now, uint64_t work, int mismatch, const char *extra,
	       uint64_t vpass, uint64_t errs)
{
	h->seq++;
	uint64_t late = now - h->deadline;
	uint64_t dt = now - h->last_t;
	uint64_t rate = dt ? (work - h->last_work) * 1000 / dt : 0;
	gc_say("GCHB seq=%" PRIu64 " t_ms=%" PRIu64 " wl=%s work=%" PRIu64 " rate=%" PRIu64
	       " check=%s extra=%s,vpass:%" PRIu64 ",errs:%" PRIu64 ",late:%" PRIu64 "\n",
	       h->seq, now - start_ms, wl, work, rate, mismatch ? "MISMATCH" : "OK", extra, vpass, errs, late);
	h->last_t = now;
	h->last_work = work;
	h->deadline += 1000 * (late / 1000 + 1);
}

int main(int argc, char **argv)
{
	start_ms = gc_now_ms();
	struct gc g = {
		.o = {
			.workload = "memtouch",
			.seed = 0x6763636f7079ull, /* "gccopy": fixed, so every boot is identical */
			.ws_mib = 16,
			/* The window moves 64 KiB per pass over it: under TCG (~60 passes/s at
			 * 16 MiB) ~4-6 MiB/s of pages enter the working set, the order of a
			 * 100 Mbit/s link, so how pages are ordered on the wire matters. */
			.ws_step_kib = 64,
			.verify_every = 1,
			.kv_put_pct = 20,
			.disk_ref = -1,
			.disk_ms = 250,
		},
	};
	if (parse_args(argc, argv, &g.o))
		return 2;

	const struct workload *wl = NULL;
	if (!strcmp(g.o.workload, "memtouch"))
		wl = &wl_memtouch;
	else if (!strcmp(g.o.workload, "sort"))
		wl = &wl_sort;
	else if (!strcmp(g.o.workload, "kv"))
		wl = &wl_kv;
	else {
		gc_say("GCERR unknown workload %s (want memtouch, sort or kv)\n", g.o.workload);
		return 2;
	}
	wl_name = wl->name;

	if (g.o.threads > 1) {
		/* gc.mib is the total over the workers, as the default (default_mib) sizes it. */
		uint64_t each = g.o.mib / g.o.threads;
		return gc_run_workers(wl, &g.o, each < MIN_MIB ? MIN_MIB : each);
	}

	if (g.o.disk && gc_disk_open(&g, g.o.disk, g.o.disk_ref))
		return 1;
	if (wl->setup(&g))
		return 1;
	uint64_t ready = gc_now_ms();
	gc_say_ready(wl, &g.o, g.o.mib, ready);

	struct gc_hb hb;
	gc_hb_start(&hb, ready, g.work);
	uint64_t disk_due = ready;
	for (;;) {
		wl->step(&g);
		uint64_t now = gc_now_ms();
		if (gc_disk_enabled() && now >= disk_due) {
			gc_disk_step(&g);
			disk_due = now + g.o.disk_ms;
		}
		if (now < hb.deadline)
			continue;
		char extra[GC_EXTRA_MAX];
		gc_extra(wl, &g, extra, sizeof extra);
		gc_hb_say(&hb, wl->name, now, g.work, g.mismatch, extra, g.vpass, g.errs);
		if (g.o.selftest && hb.seq == GC_SELFTEST_AT_SEQ)
			g.selftest_due = g.o.selftest;
	}
}
