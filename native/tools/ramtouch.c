/*
 * ramtouch: the faulting side of the memory-plane tests (stands in for QEMU).
 *
 *   ramtouch gen FILE PAGES
 *       writes a source RAM file with the known pattern: holes, explicit all-zero pages and
 *       pattern pages (see expect_word).
 *   ramtouch run FILE PAGES MODE [SEED] [DELAY_US]
 *       opens (creating, sized if empty) FILE, maps it MAP_SHARED (the shim, if preloaded,
 *       registers it), prints "MAPPED" and then touches every page once in MODE order:
 *         seq     ascending reads
 *         random  shuffled reads
 *         mixed   shuffled, every other touch a write (word 1 of the page is overwritten)
 *         hold    no touching: waits for a line on stdin first (pages pushed ahead)
 *         remove  MADV_REMOVE a quarter-way range first (must read as zeros), then seq
 *         holdmixed  waits for a line on stdin, then mixed, then (after RESULT) for another
 *                 line before it exits (a write tracker scans it between the two)
 *       (sleeping DELAY_US after each touch, to stretch a run over a fault injection),
 *       then checks every byte of every page and prints one RESULT line with the
 *       first-touch latency p50/p99/max in microseconds. Exit 0 only if every byte is right.
 *   The pattern is the same function in the C# tests (TestPattern.cs): keep them in step.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define WORDS (PAGE / 8)

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* 0: hole in the file, 1: explicit all-zero data, 2: pattern */
static int page_kind(uint64_t p)
{
	if (p % 13 == 4)
		return 0;
	if (p % 17 == 9)
		return 1;
	return 2;
}

/* mode "remove": [removed_lo, removed_hi) was discarded with MADV_REMOVE and must read as zeros */
static uint64_t removed_lo, removed_hi;

static uint64_t expect_word(uint64_t p, uint64_t w)
{
	if (p >= removed_lo && p < removed_hi)
		return 0;
	return page_kind(p) == 2 ? mix(p * WORDS + w) : 0;
}

static uint64_t marker(uint64_t p) { return ~mix(p) | 1; }

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int gen(const char *file, uint64_t pages)
{
	int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)(pages * PAGE)) < 0) {
		perror(file);
		return 2;
	}
	uint64_t buf[WORDS];
	for (uint64_t p = 0; p < pages; p++) {
		int k = page_kind(p);
		if (k == 0)
			continue;
		for (uint64_t w = 0; w < WORDS; w++)
			buf[w] = expect_word(p, w);
		if (pwrite(fd, buf, PAGE, (off_t)(p * PAGE)) != PAGE) {
			perror("pwrite");
			return 2;
		}
	}
	close(fd);
	printf("GENERATED pages=%llu\n", (unsigned long long)pages);
	return 0;
}

static int run(const char *file, uint64_t pages, const char *mode, uint64_t seed, unsigned delay_us)
{
	int fd = open(file, O_RDWR | O_CREAT, 0600);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(file);
		return 2;
	}
	if (st.st_size == 0 && ftruncate(fd, (off_t)(pages * PAGE)) < 0) {
		perror("ftruncate");
		return 2;
	}
	volatile uint64_t *ram = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (ram == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	printf("MAPPED\n");
	fflush(stdout);

	uint64_t *order = malloc(pages * sizeof *order);
	unsigned char *written = calloc(pages, 1);
	double *lat = malloc(pages * sizeof *lat);
	for (uint64_t i = 0; i < pages; i++)
		order[i] = i;
	uint64_t s = seed ? seed : 1;
	int held = strcmp(mode, "holdmixed") == 0;
	int shuffle = strcmp(mode, "random") == 0 || strcmp(mode, "mixed") == 0 || held;
	int writes = strcmp(mode, "mixed") == 0 || held;
	if (shuffle)
		for (uint64_t i = pages - 1; i > 0; i--) {
			s = mix(s);
			uint64_t j = s % (i + 1), t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
	uint64_t touched = 0;
	if (strcmp(mode, "remove") == 0) {
		/* Discard a range before touching it (what QEMU does for a balloon or a discard):
		 * the kernel sends UFFD_EVENT_REMOVE and the range must now read as zeros, even if
		 * the source's content for it is still on its way. */
		removed_lo = pages / 4;
		removed_hi = removed_lo + pages / 8;
		if (madvise((char *)ram + removed_lo * PAGE, (removed_hi - removed_lo) * PAGE, MADV_REMOVE) < 0) {
			perror("madvise(MADV_REMOVE)");
			return 2;
		}
	}
	if (held) {
		char line[64];
		if (!fgets(line, sizeof line, stdin))
			return 2;
	}
	if (strcmp(mode, "hold") == 0) {
		char line[64];
		if (!fgets(line, sizeof line, stdin))
			return 2;
	} else {
		for (uint64_t i = 0; i < pages; i++) {
			uint64_t p = order[i];
			double t0 = now_us();
			if (writes && (i & 1)) {
				ram[p * WORDS + 1] = marker(p);
				written[p] = 1;
			} else {
				(void)ram[p * WORDS];
			}
			lat[touched++] = now_us() - t0;
			if (delay_us)
				usleep(delay_us);
		}
	}
	uint64_t bad = 0, first_bad = (uint64_t)-1, first_off = 0;
	for (uint64_t p = 0; p < pages; p++)
		for (uint64_t w = 0; w < WORDS; w++) {
			uint64_t want = (w == 1 && written[p]) ? marker(p) : expect_word(p, w);
			if (ram[p * WORDS + w] != want) {
				if (!bad) {
					first_bad = p;
					first_off = w * 8;
				}
				bad++;
			}
		}
	double p50 = 0, p99 = 0, mx = 0;
	if (touched) {
		qsort(lat, touched, sizeof *lat, cmp_double);
		p50 = lat[touched / 2];
		p99 = lat[(touched * 99) / 100];
		mx = lat[touched - 1];
	}
	printf("RESULT ok=%d pages=%llu mode=%s bad_words=%llu first_bad_page=%lld first_bad_off=%llu "
	       "p50_us=%.1f p99_us=%.1f max_us=%.1f\n",
	       bad == 0, (unsigned long long)pages, mode, (unsigned long long)bad,
	       bad ? (long long)first_bad : -1LL, (unsigned long long)first_off, p50, p99, mx);
	fflush(stdout);
	if (held) {
		char line[64];
		if (!fgets(line, sizeof line, stdin))
			return 2;
	}
	return bad == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "gen") == 0)
		return gen(argv[2], strtoull(argv[3], NULL, 0));
	if (argc >= 5 && strcmp(argv[1], "run") == 0)
		return run(argv[2], strtoull(argv[3], NULL, 0), argv[4],
			   argc > 5 ? strtoull(argv[5], NULL, 0) : 1,
			   argc > 6 ? (unsigned)strtoul(argv[6], NULL, 0) : 0);
	fprintf(stderr, "usage: ramtouch gen FILE PAGES | ramtouch run FILE PAGES seq|random|mixed|hold|holdmixed|remove [SEED] [DELAY_US]\n");
	return 2;
}
