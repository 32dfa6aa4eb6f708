/*
 * sort: a deterministic compute job over a large array, repeated in rounds.
 *
 * Each round generates n pseudo-random 64-bit keys (seeded by seed and round number)
 * into one array and sorts them with a bottom-up merge sort that ping-pongs between two
 * arrays of n keys each (together gc.mib MiB). Every pass streams the whole input and
 * rewrites the whole output: a compute job whose working set is all of its memory.
 *
 * Checks, all tied to progress and none to the clock:
 *  - every 4 KiB block gets a checksum (an order-sensitive hash seeded by its position)
 *    as it is written; before a merge pass reads an array, a verify sweep recomputes the
 *    checksum of every block of it. A block that reads as zeros or as its content from
 *    an earlier pass fails there, before it can leak into the output.
 *  - the last pass of a round checks that its output is in order and that its multiset
 *    hash equals the one taken when the keys were generated.
 *
 * The whole computation is chunked into short resumable steps (a state machine), so
 * heartbeats stay on time however large the array is. Work unit: one key written.
 */
#include "gcwork.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define BLK (GC_PAGE / 8) /* keys per checksummed block */
#define OUT_CHUNK 4096    /* keys written per step (generate / merge) */
#define VFY_CHUNK 8       /* blocks verified per step (the same amount of memory) */
#define HMUL 0x100000001b3ull

enum phase { GEN, VERIFY, MERGE };

struct srt {
	uint64_t *arr[2];
	uint64_t *sum[2];    /* checksum of each block of each array */
	uint64_t n, nblk;    /* keys and blocks per array */
	int src;             /* array holding the input of the current phase */
	enum phase phase;
	uint64_t round, width, passes;
	uint64_t pos;        /* GEN/MERGE: next key to write; VERIFY: next block */
	uint64_t lo, mid, hi, i, j; /* MERGE: the pair of runs being merged */
	uint64_t h;          /* running checksum of the block being written */
	uint64_t rng;        /* GEN: key generator */
	uint64_t ms_gen, ms_out, prev; /* multiset hashes; last key out of the final pass */
	int final;           /* this merge pass produces the sorted round result */
	uint64_t *snap;      /* stale self-test: an old copy of one block */
	int snap_arr;
};

static uint64_t h_init(uint64_t seed, int a, uint64_t blk)
{
	return gc_mix64(seed ^ ((uint64_t)a << 48) ^ blk);
}

static uint64_t block_hash(uint64_t seed, int a, uint64_t blk, const uint64_t *p)
{
	uint64_t h = h_init(seed, a, blk);
	for (unsigned k = 0; k < BLK; k++)
		h = (h ^ p[k]) * HMUL;
	return h;
}

/* Append one key to the output array (the one that is not s->src in MERGE). */
static inline void put(struct gc *g, struct srt *s, int d, uint64_t v)
{
	s->arr[d][s->pos] = v;
	s->h = (s->h ^ v) * HMUL;
	if (++s->pos % BLK == 0) {
		uint64_t blk = s->pos / BLK - 1;
		s->sum[d][blk] = s->h;
		s->h = h_init(g->o.seed, d, blk + 1);
	}
}

static void start_round(struct gc *g, struct srt *s)
{
	s->phase = GEN;
	s->pos = 0;
	s->rng = g->o.seed ^ gc_mix64(s->round);
	s->ms_gen = 0;
	s->h = h_init(g->o.seed, s->src, 0);
}

static void start_pass(struct gc *g, struct srt *s)
{
	s->phase = MERGE;
	s->pos = 0;
	s->lo = 0;
	s->mid = s->width < s->n ? s->width : s->n;
	s->hi = 2 * s->width < s->n ? 2 * s->width : s->n;
	s->i = s->lo;
	s->j = s->mid;
	s->final = s->hi == s->n;
	s->ms_out = 0;
	s->prev = 0;
	s->h = h_init(g->o.seed, s->src ^ 1, 0);
}

/* Corruption is applied just before a verify sweep, on the array about to be swept:
 * that is the moment a real lost or stale page would do harm. */
static void selftest(struct gc *g, struct srt *s)
{
	uint64_t blk = s->nblk / 2;
	uint64_t *p = s->arr[s->src] + blk * BLK;
	if (g->selftest_due == 1) {
		memset(p, 0, GC_PAGE);
		gc_say("GCSELFTEST wl=sort zeroed block arr=%d idx=%" PRIu64 "\n", s->src, blk);
		g->selftest_due = 0;
	} else if (!s->snap) {
		/* Keep this version; put it back once the array has been rewritten. */
		s->snap = gc_alloc(g, GC_PAGE, "self-test copy");
		if (s->snap)
			memcpy(s->snap, p, GC_PAGE);
		s->snap_arr = s->src;
	} else if (s->snap_arr == s->src) {
		memcpy(p, s->snap, GC_PAGE);
		gc_say("GCSELFTEST wl=sort made block arr=%d idx=%" PRIu64 " stale (content from an earlier pass)\n",
		       s->src, blk);
		g->selftest_due = 0;
	}
}

static void srt_step(struct gc *g)
{
	struct srt *s = g->wl;
	switch (s->phase) {
	case GEN: {
		int k;
		for (k = 0; k < OUT_CHUNK && s->pos < s->n; k++) {
			uint64_t v = gc_rand(&s->rng);
			s->ms_gen += gc_mix64(v);
			put(g, s, s->src, v);
		}
		g->work += (uint64_t)k;
		if (s->pos == s->n) {
			s->width = 1;
			s->phase = VERIFY;
			s->pos = 0;
		}
		return;
	}

	case VERIFY:
		if (s->pos == 0 && g->selftest_due)
			selftest(g, s);
		for (int k = 0; k < VFY_CHUNK && s->pos < s->nblk; k++, s->pos++) {
			const uint64_t *p = s->arr[s->src] + s->pos * BLK;
			uint64_t h = block_hash(g->o.seed, s->src, s->pos, p);
			if (h == s->sum[s->src][s->pos])
				continue;
			uint64_t nz = 0;
			for (unsigned x = 0; x < BLK; x++)
				nz |= p[x];
			gc_mismatch(g, "what=block arr=%d idx=%" PRIu64 " off=%#" PRIx64 " kind=%s round=%" PRIu64
				    " pass=%" PRIu64,
				    s->src, s->pos, s->pos * GC_PAGE, nz ? "bad-checksum" : "zero", s->round,
				    s->passes);
		}
		if (s->pos == s->nblk) {
			g->vpass++;
			start_pass(g, s);
		}
		return;

	case MERGE: {
		const uint64_t *a = s->arr[s->src];
		int d = s->src ^ 1;
		int k;
		for (k = 0; k < OUT_CHUNK; k++) {
			if (s->pos == s->hi) {
				if (s->hi == s->n)
					break;
				s->lo = s->hi;
				s->mid = s->lo + s->width < s->n ? s->lo + s->width : s->n;
				s->hi = s->lo + 2 * s->width < s->n ? s->lo + 2 * s->width : s->n;
				s->i = s->lo;
				s->j = s->mid;
			}
			uint64_t v;
			if (s->j >= s->hi || (s->i < s->mid && a[s->i] <= a[s->j]))
				v = a[s->i++];
			else
				v = a[s->j++];
			if (s->final) {
				if (v < s->prev)
					gc_mismatch(g, "what=round round=%" PRIu64 " kind=order pos=%" PRIu64,
						    s->round, s->pos);
				s->prev = v;
				s->ms_out += gc_mix64(v);
			}
			put(g, s, d, v);
		}
		g->work += (uint64_t)k;
		if (s->pos < s->n)
			return;
		s->passes++;
		s->src = d;
		if (s->final) {
			if (s->ms_out != s->ms_gen)
				gc_mismatch(g, "what=round round=%" PRIu64 " kind=multiset", s->round);
			s->round++;
			start_round(g, s);
		} else {
			s->width *= 2;
			s->phase = VERIFY;
			s->pos = 0;
		}
		return;
	}
	}
}

static int srt_setup(struct gc *g)
{
	/* Its own page per worker (gc_alloc maps whole pages): no false sharing. */
	struct srt *s = gc_alloc(g, sizeof *s, "sort state");
	if (!s)
		return -1;
	g->wl = s;
	s->n = g->o.mib * (1024 * 1024 / 2 / 8); /* two arrays of 8-byte keys */
	s->nblk = s->n / BLK;
	for (int a = 0; a < 2; a++) {
		s->arr[a] = gc_alloc(g, s->n * 8, "sort array");
		s->sum[a] = gc_alloc(g, s->nblk * 8, "sort checksums");
		if (!s->arr[a] || !s->sum[a])
			return -1;
	}
	/* Ready means the first round's keys are in memory. */
	start_round(g, s);
	while (s->phase == GEN)
		srt_step(g);
	return 0;
}

static void srt_extra(struct gc *g, char *buf, size_t n)
{
	static const char *const names[] = { "gen", "verify", "merge" };
	const struct srt *s = g->wl;
	snprintf(buf, n, "round:%" PRIu64 ",width:%" PRIu64 ",phase:%s,passes:%" PRIu64, s->round, s->width,
		 names[s->phase], s->passes);
}

const struct workload wl_sort = {
	.name = "sort",
	.unit = "key-written",
	.setup = srt_setup,
	.step = srt_step,
	.extra = srt_extra,
};
