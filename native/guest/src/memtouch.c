/*
 * memtouch: fill N MiB page by page, then keep rewriting a working set that slides
 * through the region.
 *
 * Every 4 KiB page holds a pattern that is a pure function of (page index, version):
 *   word 0 = MAGIC ^ index, word 1 = version, words 2..511 = base + i * STRIDE,
 * with base = hash(seed, index, version). The expected version of each page lives in a
 * separate array, so a page can be checked completely without keeping a copy of it.
 * A page that reads as zeros, as another page, or as an older version of itself fails.
 *
 * Work unit: one page rewritten. Each rewrite first checks the page's header (a zero or
 * stale page in the working set would otherwise be overwritten unseen). Verification is tied to work (one page verified per
 * page rewritten, in a rolling sweep over the whole region), not to the clock, so the
 * order of page accesses is the same in every run.
 */
#include "gcwork.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define WORDS (GC_PAGE / 8)
#define MAGIC 0x4743504700000000ull /* "GCPG" in the top half, page index below */
#define STRIDE 0x9e3779b97f4a7c15ull
#define CHUNK 16 /* pages rewritten (and verified) per step: ~0.5 ms under TCG */

struct mt {
	uint64_t *mem;
	uint32_t *ver;    /* expected version of each page; 0 = never written */
	uint64_t npages;
	uint64_t ws;      /* working-set pages */
	uint64_t step;    /* pages the window moves after each pass over it */
	uint64_t win;     /* first page of the window */
	uint64_t cur;     /* next page to rewrite, as an offset in the window */
	uint64_t passes;  /* passes over the window */
	uint64_t vcur;    /* next page to verify */
	uint64_t vdebt;   /* rewrites not yet matched by a verified page (gc.verify_every) */
};

static uint64_t page_base(uint64_t seed, uint64_t p, uint32_t v)
{
	return gc_mix64(seed ^ gc_mix64((p << 32) | v));
}

static void write_page(struct mt *m, uint64_t seed, uint64_t p, uint32_t v)
{
	uint64_t *w = m->mem + p * WORDS;
	uint64_t x = page_base(seed, p, v);
	w[0] = MAGIC ^ p;
	w[1] = v;
	for (unsigned i = 2; i < WORDS; i++, x += STRIDE)
		w[i] = x;
}

/* Says what a bad page holds, to tell a migration bug's signature from random damage. */
static void report(struct gc *g, struct mt *m, uint64_t p)
{
	const uint64_t *w = m->mem + p * WORDS;
	uint32_t want = m->ver[p];
	uint64_t nz = 0;
	for (unsigned i = 0; i < WORDS; i++)
		nz |= w[i];
	const char *kind = "garbage";
	if (!nz)
		kind = "zero";
	else if (w[0] == (MAGIC ^ p) && w[1] < want)
		kind = "stale";
	else if ((w[0] & ~0xffffffffull) == MAGIC && w[0] != (MAGIC ^ p))
		kind = "other-page";
	gc_mismatch(g, "what=page idx=%" PRIu64 " off=%#" PRIx64 " kind=%s want_ver=%u found_ver=%" PRIu64,
		    p, p * GC_PAGE, kind, want, nz ? w[1] : 0);
}

static int check_page(struct gc *g, struct mt *m, uint64_t p)
{
	const uint64_t *w = m->mem + p * WORDS;
	uint32_t v = m->ver[p];
	uint64_t x = page_base(g->o.seed, p, v);
	uint64_t diff = (w[0] ^ (MAGIC ^ p)) | (w[1] ^ v);
	for (unsigned i = 2; i < WORDS; i++, x += STRIDE)
		diff |= w[i] ^ x;
	if (!diff)
		return 0;
	report(g, m, p);
	return -1;
}

static int mt_setup(struct gc *g)
{
	/* Its own page per worker (gc_alloc maps whole pages): no false sharing. */
	struct mt *m = gc_alloc(g, sizeof *m, "memtouch state");
	if (!m)
		return -1;
	g->wl = m;
	m->npages = g->o.mib * (1024 * 1024 / GC_PAGE);
	m->ws = g->o.ws_mib * (1024 * 1024 / GC_PAGE);
	if (m->ws == 0 || m->ws > m->npages)
		m->ws = m->npages;
	m->step = g->o.ws_step_kib / (GC_PAGE / 1024);
	if (m->step == 0)
		m->step = 1;
	m->mem = gc_alloc(g, m->npages * GC_PAGE, "memtouch region");
	m->ver = gc_alloc(g, m->npages * sizeof *m->ver, "memtouch versions");
	if (!m->mem || !m->ver)
		return -1;
	for (uint64_t p = 0; p < m->npages; p++) {
		m->ver[p] = 1;
		write_page(m, g->o.seed, p, 1);
	}
	return 0;
}

/* The self-test hits a page just behind the window: it was rewritten recently (so an
 * older version exists) and the window moves away from it, so only the check can see. */
static void selftest(struct gc *g, struct mt *m)
{
	uint64_t p = (m->win + m->npages - 1) % m->npages;
	if (g->selftest_due == 1) {
		memset(m->mem + p * WORDS, 0, GC_PAGE);
		gc_say("GCSELFTEST wl=memtouch zeroed page idx=%" PRIu64 " off=%#" PRIx64 "\n", p, p * GC_PAGE);
	} else {
		/* ver-1 is exactly what the page held before its last rewrite. */
		uint32_t old = m->ver[p] - 1;
		if (old == 0)
			memset(m->mem + p * WORDS, 0, GC_PAGE);
		else
			write_page(m, g->o.seed, p, old);
		gc_say("GCSELFTEST wl=memtouch made page idx=%" PRIu64 " stale (ver %u, expected %u)\n", p, old, m->ver[p]);
	}
	g->selftest_due = 0;
}

static void mt_step(struct gc *g)
{
	struct mt *m = g->wl;
	if (g->selftest_due)
		selftest(g, m);
	for (int k = 0; k < CHUNK; k++) {
		uint64_t p = (m->win + m->cur) % m->npages;
		const uint64_t *w = m->mem + p * WORDS;
		/* Before overwriting, check the header: two loads that catch a zero or
		 * stale page in the working set, which the rewrite would otherwise hide. */
		if (w[0] == (MAGIC ^ p) && w[1] == m->ver[p])
			write_page(m, g->o.seed, p, ++m->ver[p]);
		else
			report(g, m, p); /* left in place, so the sweep sees it too */
		if (++m->cur == m->ws) {
			m->cur = 0;
			m->passes++;
			m->win = (m->win + m->step) % m->npages;
		}
	}
	g->work += CHUNK;
	/* One page verified per gc.verify_every pages rewritten (default 1: the sweep covers the
	 * region every ~0.25 s under TCG, so the VM needs all its memory at once; a larger value
	 * leaves a VM whose new-page rate is its moving working set, as a server's is). */
	for (uint64_t n = gc_verify_budget(&m->vdebt, CHUNK, g->o.verify_every); n > 0; n--) {
		check_page(g, m, m->vcur);
		if (++m->vcur == m->npages) {
			m->vcur = 0;
			g->vpass++;
		}
	}
}

static void mt_extra(struct gc *g, char *buf, size_t n)
{
	const struct mt *m = g->wl;
	snprintf(buf, n, "win:%" PRIu64 ",ws:%" PRIu64 ",passes:%" PRIu64, m->win, m->ws, m->passes);
}

const struct workload wl_memtouch = {
	.name = "memtouch",
	.unit = "page-rewrite",
	.setup = mt_setup,
	.step = mt_step,
	.extra = mt_extra,
};
