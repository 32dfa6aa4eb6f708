/*
 * wp-scan: can a running QEMU's writes to its shared guest-RAM file be tracked from the agent,
 * a different process, and at what cost? (issue 16, "send before the pause what will not
 * change"; results in docs/memory-plane.md, "Tracking writes while the source runs").
 *
 *   wp-scan MIB ROUNDS PAGES_PER_ROUND [FILE]
 *
 * A writer child stands in for QEMU with the shim: it maps a tmpfs file MAP_SHARED (FILE, default
 * a temp file in /dev/shm), registers the mapping with a userfaultfd in write-protect mode with
 * UFFD_FEATURE_WP_ASYNC (a write to a protected page is not reported as a fault: the kernel
 * resolves it and clears the page's uffd-wp bit) and UFFD_FEATURE_WP_UNPOPULATED (a page with no
 * PTE yet counts as protected too, so a first write is caught: needed for anonymous memory; on a
 * tmpfs file the kernel marks a missing PTE by itself, and the same runs without the feature gave
 * the same results), then write-protects the range.
 * The parent, standing in for the agent, reads the child's written pages with the PAGEMAP_SCAN
 * ioctl on /proc/CHILD/pagemap, with PM_SCAN_WP_MATCHING (protect again what it reports, in the
 * same walk) and PAGE_IS_WRITTEN.
 *
 * Each round the child writes PAGES_PER_ROUND random pages (and records them in a bitmap of its
 * own, in memory nobody tracks); the parent scans and checks the reported set against that
 * record, page for page: a written page not reported is a lost write (the destination would
 * keep a stale copy), a reported page not written costs only a resend. Also checked: a scan
 * before any write reports nothing; a write through another mapping of the file (the agent's)
 * is not reported (the tracking sees only the registered mapping).
 * Last, the child writes every page once and the parent scans twice: the scan that finds the
 * whole RAM written, and the steady scan of a RAM all mapped with nothing written since.
 * Prints one RESULT line; exit 0 only if no written page was missed.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096ull

/* linux/fs.h of the build host (Debian 12: 6.1 headers) predates PAGEMAP_SCAN (6.7). */
#ifndef PAGEMAP_SCAN
struct page_region {
	uint64_t start, end, categories;
};
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_WRITTEN (1ull << 1)
#define PM_SCAN_WP_MATCHING (1ull << 0)
#define PM_SCAN_CHECK_WPASYNC (1ull << 1)
#endif
#include "uffd-wp-compat.h"

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void die(const char *what)
{
	fprintf(stderr, "wp-scan: %s: %s\n", what, strerror(errno));
	exit(2);
}

static uint64_t next_random(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Pipe messages: the child's mapping address, then one byte per round each way. */
static void put(int fd, const void *p, size_t n)
{
	if (write(fd, p, n) != (ssize_t)n) die("pipe write");
}

static void get(int fd, void *p, size_t n)
{
	if (read(fd, p, n) != (ssize_t)n) die("pipe read");
}

static void writer(int ram_fd, uint64_t pages, uint64_t per_round, uint8_t *record, int to_parent, int from_parent)
{
	uint8_t *ram = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ram_fd, 0);
	if (ram == MAP_FAILED) die("mmap");
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0) die("userfaultfd");
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_WP_HUGETLBFS_SHMEM};
	if (ioctl(uffd, UFFDIO_API, &api)) die("UFFDIO_API (WP_ASYNC, WP_UNPOPULATED)");
	struct uffdio_register reg = {.range = {(uint64_t)ram, pages * PAGE}, .mode = UFFDIO_REGISTER_MODE_WP};
	if (ioctl(uffd, UFFDIO_REGISTER, &reg)) die("UFFDIO_REGISTER (WP)");
	double t = now_ms();
	struct uffdio_writeprotect wp = {.range = {(uint64_t)ram, pages * PAGE}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp)) die("UFFDIO_WRITEPROTECT");
	double protect_ms = now_ms() - t;
	uint64_t addr = (uint64_t)ram;
	put(to_parent, &addr, sizeof addr);
	put(to_parent, &protect_ms, sizeof protect_ms);
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	char cmd;
	while (read(from_parent, &cmd, 1) == 1 && (cmd == 'w' || cmd == 'a')) {
		if (cmd == 'a') { /* every page once: a guest that has touched its whole RAM */
			for (uint64_t p = 0; p < pages; p++) {
				ram[p * PAGE] ^= 0x5a;
				record[p / 8] |= (uint8_t)(1u << (p % 8));
			}
			put(to_parent, "d", 1);
			continue;
		}
		for (uint64_t i = 0; i < per_round; i++) {
			uint64_t p = next_random(&seed) % pages;
			ram[p * PAGE + (i % PAGE)] ^= 0x5a; /* a read-modify-write, as a guest's store */
			record[p / 8] |= (uint8_t)(1u << (p % 8));
		}
		put(to_parent, "d", 1);
	}
	_exit(0);
}

static double scan(int pagemap, uint64_t start, uint64_t len, struct page_region *vec, uint64_t vec_len,
		   uint8_t *found, uint64_t *regions)
{
	double t = now_ms();
	uint64_t at = start, end = start + len;
	*regions = 0;
	while (at < end) {
		struct pm_scan_arg arg = {
			.size = sizeof arg,
			.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = at,
			.end = end,
			.vec = (uint64_t)vec,
			.vec_len = vec_len,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		long n = ioctl(pagemap, PAGEMAP_SCAN, &arg);
		if (n < 0) die("PAGEMAP_SCAN");
		for (long i = 0; i < n; i++)
			for (uint64_t a = vec[i].start; a < vec[i].end; a += PAGE) {
				uint64_t p = (a - start) / PAGE;
				found[p / 8] |= (uint8_t)(1u << (p % 8));
			}
		*regions += (uint64_t)n;
		at = arg.walk_end;
	}
	return now_ms() - t;
}

/* The parent's side of one round: the child writes (cmd 'w': random pages, 'a': every page),
 * then one scan, checked page for page against the child's record. */
struct tally {
	uint64_t written, missed, extra;
};
struct prober {
	int from_child, to_child, pagemap;
	uint64_t start, len;
	struct page_region *vec;
	uint64_t vec_len;
	uint8_t *record, *found;
	uint64_t bitmap;
};

static double write_and_scan(struct prober *p, char cmd, struct tally *t)
{
	memset(p->record, 0, p->bitmap);
	memset(p->found, 0, p->bitmap);
	put(p->to_child, &cmd, 1);
	char ack;
	get(p->from_child, &ack, 1);
	uint64_t regions;
	double ms = scan(p->pagemap, p->start, p->len, p->vec, p->vec_len, p->found, &regions);
	for (uint64_t i = 0; i < p->bitmap; i++) {
		t->written += (uint64_t)__builtin_popcount(p->record[i]);
		t->missed += (uint64_t)__builtin_popcount(p->record[i] & (uint8_t)~p->found[i]);
		t->extra += (uint64_t)__builtin_popcount(p->found[i] & (uint8_t)~p->record[i]);
	}
	return ms;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: wp-scan MIB ROUNDS PAGES_PER_ROUND [FILE]\n");
		return 2;
	}
	uint64_t pages = strtoull(argv[1], NULL, 10) * 256, rounds = strtoull(argv[2], NULL, 10), per_round = strtoull(argv[3], NULL, 10);
	char path[256];
	snprintf(path, sizeof path, "%s", argc > 4 ? argv[4] : "/dev/shm/wp-scan-XXXXXX");
	int ram_fd = argc > 4 ? open(path, O_RDWR | O_CREAT, 0600) : mkstemp(path);
	if (ram_fd < 0) die("open RAM file");
	if (argc <= 4) unlink(path);
	if (ftruncate(ram_fd, (off_t)(pages * PAGE))) die("ftruncate");
	uint64_t bitmap = (pages + 7) / 8;
	uint8_t *record = mmap(NULL, bitmap, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint8_t *found = calloc(bitmap, 1);
	if (record == MAP_FAILED || !found) die("bitmaps");
	int up[2], down[2];
	if (pipe(up) || pipe(down)) die("pipe");
	pid_t child = fork();
	if (child < 0) die("fork");
	if (child == 0) {
		close(up[0]);
		close(down[1]);
		writer(ram_fd, pages, per_round, record, up[1], down[0]);
	}
	close(up[1]);
	close(down[0]);
	uint64_t start;
	double protect_ms;
	get(up[0], &start, sizeof start);
	get(up[0], &protect_ms, sizeof protect_ms);
	char pm_path[64];
	snprintf(pm_path, sizeof pm_path, "/proc/%d/pagemap", child);
	int pagemap = open(pm_path, O_RDONLY);
	if (pagemap < 0) die("open pagemap");
	uint64_t vec_len = 4096, regions;
	struct page_region *vec = calloc(vec_len, sizeof *vec);

	/* Nothing written yet: nothing reported (unpopulated pages count as protected). */
	double clean_ms = scan(pagemap, start, pages * PAGE, vec, vec_len, found, &regions);
	uint64_t before = 0;
	for (uint64_t i = 0; i < bitmap; i++) before += (uint64_t)__builtin_popcount(found[i]);

	/* A write through another mapping of the file (the agent's own) is not the child's. */
	uint8_t *mine = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ram_fd, 0);
	if (mine == MAP_FAILED) die("mmap (agent's)");
	mine[0] = 1;
	memset(found, 0, bitmap);
	scan(pagemap, start, pages * PAGE, vec, vec_len, found, &regions);
	int other_reported = found[0] & 1;

	struct tally t = {0};
	struct prober pr = {up[0], down[1], pagemap, start, pages * PAGE, vec, vec_len, record, found, bitmap};
	double scan_total = 0, scan_max = 0;
	for (uint64_t r = 0; r < rounds; r++) {
		double ms = write_and_scan(&pr, 'w', &t);
		scan_total += ms;
		if (ms > scan_max) scan_max = ms;
	}
	/* Every page written (the scan that finds the whole RAM), then none (the steady scan of a
	 * guest whose RAM is all mapped): the two bounds of one scan's cost at this size. */
	double full_ms = write_and_scan(&pr, 'a', &t);
	memset(found, 0, bitmap);
	double mapped_clean_ms = scan(pagemap, start, pages * PAGE, vec, vec_len, found, &regions);
	for (uint64_t i = 0; i < bitmap; i++) t.extra += (uint64_t)__builtin_popcount(found[i]);
	put(down[1], "q", 1);
	int status;
	waitpid(child, &status, 0);
	printf("RESULT mib=%llu rounds=%llu written=%llu missed=%llu extra=%llu before_any_write=%llu other_mapping_reported=%d "
	       "protect_ms=%.2f clean_scan_ms=%.2f scan_ms_mean=%.2f scan_ms_max=%.2f all_written_scan_ms=%.2f mapped_clean_scan_ms=%.2f\n",
	       (unsigned long long)(pages / 256), (unsigned long long)rounds, (unsigned long long)t.written, (unsigned long long)t.missed,
	       (unsigned long long)t.extra, (unsigned long long)before, other_reported, protect_ms, clean_ms,
	       rounds ? scan_total / (double)rounds : 0, scan_max, full_ms, mapped_clean_ms);
	return t.missed == 0 && before == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
