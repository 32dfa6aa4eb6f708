/*
 * kv: a key-value table under random gets and puts with a Zipf-like skew, the access
 * pattern of a cache or database server: a few hot records, a long cold tail.
 *
 * The table is N MiB of 64-byte records. Record r at version v holds
 *   key = KEYTAG ^ r, ver = v, val[0..5] = hash(seed, r, v) + i * STRIDE.
 * The expected version of each record lives in a separate array. Every get and every
 * put first verifies the record it touches (a put reads the old value, as a server
 * would), and a rolling sweep verifies the cold tail, which random access may not reach
 * for a long time.
 *
 * Skew: a rank is drawn log-uniformly (a power-of-two band [2^b-1, 2^(b+1)-1) is chosen
 * uniformly, then a rank inside it), so each band gets the same share of accesses:
 * P(rank) ~ 1/rank, the Zipf law with s = 1, using integers only. Ranks are scattered
 * over the table by a multiplicative permutation so hot records share no page.
 *
 * Work unit: one operation (get or put).
 */
#include "gcwork.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define KEYTAG 0x4b56524543000000ull /* "KVREC" */
#define STRIDE 0x9e3779b97f4a7c15ull
#define VALS 6
#define OPS 256   /* operations per step */
#define SWEEP 512 /* records verified by the rolling sweep per step (8 pages) */
/* A prime above any record count we use: rank * PERM mod n is a permutation of [0, n). */
#define PERM 2654435761ull

struct rec {
	uint64_t key;
	uint64_t ver;
	uint64_t val[VALS];
};

struct kv {
	struct rec *tab;
	uint32_t *ver;  /* expected version of each record */
	uint64_t n;     /* records */
	unsigned bands; /* number of power-of-two rank bands covering [0, n) */
	uint64_t rng;
	uint64_t gets, puts;
	uint64_t vcur;  /* next record for the rolling sweep */
	uint64_t vdebt; /* sweep records owed, times gc.verify_every */
};

static void fill(uint64_t seed, struct rec *r, uint64_t idx, uint32_t v)
{
	uint64_t x = gc_mix64(seed ^ gc_mix64((idx << 32) | v));
	r->key = KEYTAG ^ idx;
	r->ver = v;
	for (int i = 0; i < VALS; i++, x += STRIDE)
		r->val[i] = x;
}

static int check(struct gc *g, struct kv *k, uint64_t idx, const char *during)
{
	struct rec want;
	const struct rec *r = &k->tab[idx];
	fill(g->o.seed, &want, idx, k->ver[idx]);
	if (!memcmp(r, &want, sizeof want))
		return 0;
	uint64_t nz = r->key | r->ver;
	for (int i = 0; i < VALS; i++)
		nz |= r->val[i];
	const char *kind = !nz ? "zero"
			   : r->key == want.key && r->ver < want.ver ? "stale"
			   : "garbage";
	gc_mismatch(g, "what=record idx=%" PRIu64 " off=%#" PRIx64 " during=%s kind=%s want_ver=%" PRIu64
		    " found_ver=%" PRIu64,
		    idx, idx * sizeof *r, during, kind, want.ver, r->ver);
	return -1;
}

static int kv_setup(struct gc *g)
{
	/* Its own page per worker (gc_alloc maps whole pages): no false sharing. */
	struct kv *k = gc_alloc(g, sizeof *k, "kv state");
	if (!k)
		return -1;
	g->wl = k;
	k->n = g->o.mib * (1024 * 1024 / sizeof(struct rec));
	if (k->n >= PERM) {
		gc_say("GCERR wl=kv gc.mib=%" PRIu64 " is too large for the key permutation\n", g->o.mib);
		return -1;
	}
	k->tab = gc_alloc(g, k->n * sizeof *k->tab, "kv table");
	k->ver = gc_alloc(g, k->n * sizeof *k->ver, "kv versions");
	if (!k->tab || !k->ver)
		return -1;
	while ((1ull << k->bands) - 1 < k->n)
		k->bands++;
	k->rng = g->o.seed;
	for (uint64_t i = 0; i < k->n; i++) {
		k->ver[i] = 1;
		fill(g->o.seed, &k->tab[i], i, 1);
	}
	return 0;
}

static uint64_t pick(struct kv *k)
{
	for (;;) {
		uint64_t r = gc_rand(&k->rng);
		unsigned b = (unsigned)((r >> 32) % k->bands);
		uint64_t rank = ((1ull << b) - 1) + ((r & 0xffffffffull) & ((1ull << b) - 1));
		if (rank < k->n) /* the top band may run past the table: draw again */
			return rank * PERM % k->n;
	}
}

/* The record of rank 0 is the hottest: ~1/bands of all operations touch it, so a
 * corruption there is hit by the very next few operations, not just by the sweep. */
static void selftest(struct gc *g, struct kv *k)
{
	uint64_t idx = 0;
	if (g->selftest_due == 1) {
		/* Zero the whole page around the record, as a lost page would read. */
		memset((char *)k->tab + (idx * sizeof(struct rec) & ~(uint64_t)(GC_PAGE - 1)), 0, GC_PAGE);
		gc_say("GCSELFTEST wl=kv zeroed the page of record idx=%" PRIu64 "\n", idx);
	} else {
		uint32_t old = k->ver[idx] - 1;
		if (old == 0)
			memset(&k->tab[idx], 0, sizeof(struct rec));
		else
			fill(g->o.seed, &k->tab[idx], idx, old);
		gc_say("GCSELFTEST wl=kv made record idx=%" PRIu64 " stale (ver %u, expected %u)\n", idx, old, k->ver[idx]);
	}
	g->selftest_due = 0;
}

static void kv_step(struct gc *g)
{
	struct kv *k = g->wl;
	if (g->selftest_due)
		selftest(g, k);
	for (int i = 0; i < OPS; i++) {
		uint64_t idx = pick(k);
		int put = gc_rand(&k->rng) % 100 < g->o.kv_put_pct;
		if (check(g, k, idx, put ? "put" : "get") == 0 && put) {
			/* A record that failed its check is left as found, so the damage
			 * stays visible to the sweep instead of being papered over. */
			fill(g->o.seed, &k->tab[idx], idx, ++k->ver[idx]);
		}
		if (put)
			k->puts++;
		else
			k->gets++;
	}
	g->work += OPS;
	/* SWEEP records per step, divided by gc.verify_every (default 1): a larger value slows
	 * the sweep so the VM's new-page rate is its skewed random access, as a server's is. */
	for (uint64_t n = gc_verify_budget(&k->vdebt, SWEEP, g->o.verify_every); n > 0; n--) {
		check(g, k, k->vcur, "sweep");
		if (++k->vcur == k->n) {
			k->vcur = 0;
			g->vpass++;
		}
	}
}

static void kv_extra(struct gc *g, char *buf, size_t n)
{
	const struct kv *k = g->wl;
	snprintf(buf, n, "gets:%" PRIu64 ",puts:%" PRIu64 ",records:%" PRIu64, k->gets, k->puts, k->n);
}

const struct workload wl_kv = {
	.name = "kv",
	.unit = "op",
	.setup = kv_setup,
	.step = kv_step,
	.extra = kv_extra,
};
