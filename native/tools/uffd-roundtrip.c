/*
 * uffd-roundtrip PAGES: the in-process userfaultfd baseline for `guidecopy bench memory-plane`.
 * A shmem (memfd) range registered MISSING; a handler thread answers each fault with
 * UFFDIO_COPY of a 4 KiB page; the main thread times each first touch (touch, fault,
 * handler, copy, resume). Prints "ROUNDTRIP pages=N p50_us=.. p99_us=..".
 */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
static int uffd;
static char src[PAGE] __attribute__((aligned(PAGE)));

static void *handler(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p = { .fd = uffd, .events = POLLIN };
		if (poll(&p, 1, -1) < 0)
			return NULL;
		struct uffd_msg m;
		if (read(uffd, &m, sizeof m) != sizeof m)
			continue;
		if (m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		struct uffdio_copy c = { .dst = m.arg.pagefault.address & ~(uint64_t)(PAGE - 1),
			.src = (uint64_t)(uintptr_t)src, .len = PAGE };
		ioctl(uffd, UFFDIO_COPY, &c);
	}
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	long pages = argc > 1 ? atol(argv[1]) : 4096;
	int mfd = memfd_create("roundtrip", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, pages * PAGE) < 0)
		return 2;
	volatile char *ram = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MISSING_SHMEM };
	struct uffdio_register reg = { .range = { (uint64_t)(uintptr_t)ram, pages * PAGE },
		.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ram == MAP_FAILED || uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0 ||
	    ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
		perror("uffd");
		return 2;
	}
	for (int i = 0; i < PAGE; i++)
		src[i] = (char)i;
	pthread_t t;
	pthread_create(&t, NULL, handler, NULL);
	double *lat = malloc(pages * sizeof *lat);
	for (long p = 0; p < pages; p++) {
		double t0 = now_us();
		(void)ram[p * PAGE];
		lat[p] = now_us() - t0;
	}
	qsort(lat, pages, sizeof *lat, cmp);
	printf("ROUNDTRIP pages=%ld p50_us=%.1f p99_us=%.1f\n", pages, lat[pages / 2], lat[pages * 99 / 100]);
	return 0;
}
