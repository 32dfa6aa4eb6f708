/*
 * libguidecopy-shim: loaded into QEMU with LD_PRELOAD.
 *
 * When QEMU maps the guest-RAM file named by GUIDECOPY_RAM_PATH (MAP_SHARED, matched by
 * readlink of /proc/self/fd/N), the shim creates a userfaultfd, registers the mapping in
 * MISSING mode and hands the fd (SCM_RIGHTS) plus base/length/page size/ram path/pid to the
 * local agent over the UNIX SOCK_SEQPACKET socket GUIDECOPY_AGENT_SOCKET. QEMU goes on only
 * after the agent's ack. The shim keeps its own copy of the uffd: if the agent dies, the
 * registration stays (faults stall instead of reading zero-filled pages) and a monitor
 * thread hands the fd again to the agent's next incarnation. When the agent says "release"
 * (every page installed), the shim closes its copy so QEMU runs on plain shared memory.
 * The fd goes only to a listener whose SO_PEERCRED uid is 0 (the agent runs as root).
 *
 * Environment (nothing happens unless GUIDECOPY_RAM_PATH is set and non-empty):
 *   GUIDECOPY_RAM_PATH          path of the RAM file, or a prefix of it (e.g. a directory/)
 *   GUIDECOPY_AGENT_SOCKET      agent's UNIX socket (default /run/guidecopy/shim.sock)
 *   GUIDECOPY_AGENT_TIMEOUT_MS  bounded wait for the agent's ack at map time (default 10000)
 *   GUIDECOPY_SHIM_ON_NO_AGENT  "fail" (default): the mmap fails with ECONNREFUSED so QEMU
 *                               exits with an error; "wait": keep the registration and keep
 *                               trying in the background (guest stalls until an agent comes)
 *   GUIDECOPY_SHIM_VERBOSE      1: log each step on stderr
 *   GUIDECOPY_TRACK_WRITES      1: at load, also create a second userfaultfd with
 *                               UFFD_FEATURE_WP_ASYNC and keep it, unregistered, for the
 *                               life of QEMU (works without GUIDECOPY_RAM_PATH). Only a
 *                               process can create a uffd of its own mm: this lets the
 *                               agent of a later migration *from* this QEMU take it
 *                               (pidfd_getfd), register the RAM for write-protection and
 *                               list written pages with PAGEMAP_SCAN while the VM runs
 *                               (docs/memory-plane.md, "Tracking writes while the source
 *                               runs"). WP_ASYNC: the kernel resolves each write fault
 *                               itself, so the VM never waits on the agent, even a dead one.
 *
 * Wire format: see docs/memory-plane.md ("Shim socket").
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include "uffd-wp-compat.h"
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define GC_EXPORT __attribute__((visibility("default")))

#define SHIM_MAGIC_HELLO 0x31534347u /* "GCS1" little-endian */
#define SHIM_MAGIC_AGENT 0x31414347u /* "GCA1" */
#define SHIM_CMD_ACK 1u
#define SHIM_CMD_RELEASE 2u
#define SHIM_FLAG_RESEND 1u
#define MAX_REGIONS 16
#define HUGETLBFS_MAGIC_ 0x958458f6

struct shim_hello {
	uint32_t magic;
	uint32_t version;
	uint64_t base;
	uint64_t length;
	uint64_t page_size;
	uint64_t ioctls;     /* uffdio_register.ioctls: which install ioctls the range allows */
	uint64_t file_offset; /* mmap offset of the mapping in the RAM file */
	uint32_t pid;
	uint32_t path_len;   /* bytes of path following this header, no NUL */
	uint32_t region_id;
	uint32_t flags;      /* SHIM_FLAG_RESEND when handed again after an agent restart */
};                           /* 64 bytes */

struct shim_agent_msg {
	uint32_t magic;
	uint32_t command;
	uint64_t reserved;
};                           /* 16 bytes */

struct region {
	int used;
	int uffd;     /* the shim's own copy; -1 once released */
	int conn;     /* connection to the agent; -1 while disconnected */
	uint64_t base, length, page_size, ioctls, file_offset;
	char path[4096];
};

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);

static mmap_fn real_mmap;
static mmap_fn real_mmap64;
static const char *ram_path;
static const char *agent_socket = "/run/guidecopy/shim.sock";
static int agent_timeout_ms = 10000;
static int fail_without_agent = 1;
static int verbose;
static struct region regions[MAX_REGIONS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t monitor;
static int monitor_started;
static __thread int in_shim; /* guards against re-entry (e.g. malloc inside us mapping) */
static int track_uffd = -1;    /* GUIDECOPY_TRACK_WRITES: kept open, never read here */

static int create_uffd(void);
static void open_tracking_uffd(void);

static void logmsg(int always, const char *fmt, ...)
{
	if (!always && !verbose)
		return;
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof buf)
		n = sizeof buf - 1;
	/* write(2), not stdio: we may run inside QEMU's own stdio calls. */
	char line[1100];
	int m = snprintf(line, sizeof line, "guidecopy-shim[%d]: %.*s\n", (int)getpid(), n, buf);
	if (m > 0) {
		ssize_t ignored = write(2, line, (size_t)m < sizeof line ? (size_t)m : sizeof line - 1);
		(void)ignored;
	}
}

__attribute__((constructor)) static void shim_init(void)
{
	real_mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
	real_mmap64 = (mmap_fn)dlsym(RTLD_NEXT, "mmap64");
	if (!real_mmap64)
		real_mmap64 = real_mmap;
	const char *p = getenv("GUIDECOPY_RAM_PATH");
	if (p && *p)
		ram_path = p;
	const char *s = getenv("GUIDECOPY_AGENT_SOCKET");
	if (s && *s)
		agent_socket = s;
	const char *t = getenv("GUIDECOPY_AGENT_TIMEOUT_MS");
	if (t && *t)
		agent_timeout_ms = atoi(t);
	const char *f = getenv("GUIDECOPY_SHIM_ON_NO_AGENT");
	if (f && strcmp(f, "wait") == 0)
		fail_without_agent = 0;
	const char *v = getenv("GUIDECOPY_SHIM_VERBOSE");
	verbose = v && *v == '1';
	if (ram_path)
		logmsg(0, "active: ram path '%s', agent socket '%s'", ram_path, agent_socket);
	const char *w = getenv("GUIDECOPY_TRACK_WRITES");
	if (w && *w == '1' && track_uffd < 0)
		open_tracking_uffd();
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int path_matches(int fd, char *out, size_t outlen)
{
	char link[64];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, out, outlen - 1);
	if (n <= 0)
		return 0;
	out[n] = 0;
	size_t plen = strlen(ram_path);
	return strncmp(out, ram_path, plen) == 0;
}

/* /dev/userfaultfd first: libvirt 11 hands QEMU access to it, and it works even when
 * vm.unprivileged_userfaultfd=0. The syscall is the fallback (root, or the sysctl set). */
static int create_uffd(void)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		int fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		int saved = errno;
		close(dev);
		if (fd >= 0)
			return fd;
		logmsg(0, "USERFAULTFD_IOC_NEW failed (%s), trying the syscall", strerror(saved));
	}
	return (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
}

/* The agent finds this fd by its features in /proc/PID/fdinfo ("API:" line): WP_ASYNC is set
 * on no other uffd of ours. A kernel without WP_ASYNC (before 6.7) refuses the API call: no
 * tracking, and the agent migrates without a warm-up. */
static void open_tracking_uffd(void)
{
	int fd = create_uffd();
	if (fd < 0) {
		logmsg(0, "write tracking off: cannot create a userfaultfd: %s", strerror(errno));
		return;
	}
	struct uffdio_api api = { .api = UFFD_API,
		.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |
			    UFFD_FEATURE_WP_HUGETLBFS_SHMEM };
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		logmsg(0, "write tracking off: UFFDIO_API (WP_ASYNC) failed: %s", strerror(errno));
		close(fd);
		return;
	}
	track_uffd = fd;
	logmsg(0, "write tracking uffd %d ready", fd);
}

static int register_range(struct region *r, int fd_of_file)
{
	struct statfs sfs;
	r->page_size = (uint64_t)sysconf(_SC_PAGESIZE);
	if (fstatfs(fd_of_file, &sfs) == 0 && (unsigned long)sfs.f_type == HUGETLBFS_MAGIC_)
		r->page_size = (uint64_t)sfs.f_bsize;

	int uffd = create_uffd();
	if (uffd < 0) {
		logmsg(1, "cannot create a userfaultfd: %s (need /dev/userfaultfd access or "
		          "vm.unprivileged_userfaultfd=1)", strerror(errno));
		return -1;
	}
	/* The pager needs MISSING faults on shmem/hugetlbfs and REMOVE events (a range QEMU
	 * or the guest discards must read as zeros, never as stale source content). */
	struct uffdio_api api = { .api = UFFD_API,
		.features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MISSING_HUGETLBFS |
			    UFFD_FEATURE_EVENT_REMOVE };
	if (ioctl(uffd, UFFDIO_API, &api) < 0) {
		logmsg(1, "UFFDIO_API failed: %s", strerror(errno));
		close(uffd);
		return -1;
	}
	struct uffdio_register reg = { .range = { .start = r->base, .len = r->length },
		.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
		logmsg(1, "UFFDIO_REGISTER of %s [0x%llx, +0x%llx) failed: %s (RAM must be on "
		          "tmpfs or hugetlbfs)", r->path, (unsigned long long)r->base,
		       (unsigned long long)r->length, strerror(errno));
		close(uffd);
		return -1;
	}
	r->ioctls = reg.ioctls;
	r->uffd = uffd;
	return 0;
}

/* The agent runs as root. Whoever listens at the socket path is not proof of that: a process
 * that could unlink and rebind the path would be handed the guest's uffd (and with it the
 * guest's memory). SO_PEERCRED is the listener's credentials as of its listen(2) (unix(7)),
 * which it cannot forge; anything else is treated as "no agent": the caller retries until
 * its deadline and then fails the mapping (or, after an agent restart, keeps the uffd and
 * waits), exactly as when no agent listens. */
static int peer_is_root(int s)
{
	struct ucred cred;
	socklen_t len = sizeof cred;
	if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return 0;
	if (cred.uid == 0)
		return 1;
	static int reported_uid = -1;
	if ((int)cred.uid != reported_uid) {
		logmsg(1, "refusing the listener at %s: pid %d uid %u is not the agent (root); "
		          "not handing it the uffd", agent_socket, (int)cred.pid, (unsigned)cred.uid);
		reported_uid = (int)cred.uid;
	}
	return 0;
}

static int connect_agent(void)
{
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strncpy(sa.sun_path, agent_socket, sizeof sa.sun_path - 1);
	if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		close(s);
		errno = e;
		return -1;
	}
	if (!peer_is_root(s)) {
		close(s);
		errno = EPERM;
		return -1;
	}
	return s;
}

/* Sends the registration (uffd as SCM_RIGHTS) and waits up to timeout_ms for the ack. */
static int hand_over(struct region *r, int idx, int s, int resend, int timeout_ms)
{
	struct shim_hello h = { .magic = SHIM_MAGIC_HELLO, .version = 1, .base = r->base,
		.length = r->length, .page_size = r->page_size, .ioctls = r->ioctls, .file_offset = r->file_offset,
		.pid = (uint32_t)getpid(), .path_len = (uint32_t)strlen(r->path),
		.region_id = (uint32_t)idx, .flags = resend ? SHIM_FLAG_RESEND : 0 };
	struct iovec iov[2] = { { &h, sizeof h }, { r->path, h.path_len } };
	char cbuf[CMSG_SPACE(sizeof(int))];
	memset(cbuf, 0, sizeof cbuf);
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2, .msg_control = cbuf,
		.msg_controllen = sizeof cbuf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &r->uffd, sizeof(int));
	if (sendmsg(s, &mh, MSG_NOSIGNAL) < 0)
		return -1;
	struct pollfd p = { .fd = s, .events = POLLIN };
	int rc = poll(&p, 1, timeout_ms);
	if (rc <= 0) {
		errno = rc == 0 ? ETIMEDOUT : errno;
		return -1;
	}
	struct shim_agent_msg m;
	ssize_t n = recv(s, &m, sizeof m, 0);
	if (n != (ssize_t)sizeof m || m.magic != SHIM_MAGIC_AGENT || m.command != SHIM_CMD_ACK) {
		errno = EPROTO;
		return -1;
	}
	return 0;
}

static void release_region(struct region *r)
{
	/* The agent has installed every page: closing our copy (the agent closed its own)
	 * drops the registration, so QEMU runs on plain shared memory. */
	if (r->uffd >= 0)
		close(r->uffd);
	r->uffd = -1;
	if (r->conn >= 0)
		close(r->conn);
	r->conn = -1;
	logmsg(0, "released %s", r->path);
}

/* Watches each agent connection. There is no HUP on a uffd, so the agent learns that QEMU
 * is gone from EOF on this socket; we learn that the agent is gone the same way, and hand
 * our uffd again to the next agent that listens on the socket. */
static void *monitor_main(void *arg)
{
	(void)arg;
	int reported = 0;
	for (;;) {
		struct pollfd fds[MAX_REGIONS];
		int map[MAX_REGIONS];
		int n = 0, disconnected = 0;
		pthread_mutex_lock(&lock);
		for (int i = 0; i < MAX_REGIONS; i++) {
			struct region *r = &regions[i];
			if (!r->used || r->uffd < 0)
				continue;
			if (r->conn < 0) {
				disconnected = 1;
				int s = connect_agent();
				if (s >= 0) {
					if (hand_over(r, i, s, 1, 5000) == 0) {
						r->conn = s;
						reported = 0;
						logmsg(1, "handed %s to the agent again", r->path);
					} else {
						close(s);
					}
				} else if (!reported) {
					logmsg(1, "agent at %s unreachable (%s); guest RAM faults stall "
					          "until it is back", agent_socket, strerror(errno));
					reported = 1;
				}
			}
			if (r->conn >= 0) {
				fds[n].fd = r->conn;
				fds[n].events = POLLIN;
				map[n++] = i;
			}
		}
		pthread_mutex_unlock(&lock);
		int rc = poll(fds, (nfds_t)n, disconnected || n == 0 ? 200 : 1000);
		if (rc <= 0)
			continue;
		pthread_mutex_lock(&lock);
		for (int k = 0; k < n; k++) {
			if (!fds[k].revents)
				continue;
			struct region *r = &regions[map[k]];
			struct shim_agent_msg m;
			ssize_t got = recv(r->conn, &m, sizeof m, MSG_DONTWAIT);
			if (got == (ssize_t)sizeof m && m.magic == SHIM_MAGIC_AGENT &&
			    m.command == SHIM_CMD_RELEASE) {
				release_region(r);
			} else if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
				logmsg(1, "agent connection for %s lost; will hand the uffd again", r->path);
				close(r->conn);
				r->conn = -1;
			}
		}
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

static void *after_map(void *addr, size_t len, int fd, off_t off)
{
	char path[4096];
	if (!path_matches(fd, path, sizeof path))
		return addr;
	pthread_mutex_lock(&lock);
	int idx = -1;
	for (int i = 0; i < MAX_REGIONS; i++)
		if (!regions[i].used) {
			idx = i;
			break;
		}
	if (idx < 0) {
		pthread_mutex_unlock(&lock);
		logmsg(1, "too many RAM mappings; %s left unregistered", path);
		return addr;
	}
	struct region *r = &regions[idx];
	memset(r, 0, sizeof *r);
	r->uffd = -1;
	r->conn = -1;
	r->base = (uint64_t)(uintptr_t)addr;
	r->length = len;
	r->file_offset = (uint64_t)off;
	memcpy(r->path, path, sizeof r->path);
	if (register_range(r, fd) < 0) {
		pthread_mutex_unlock(&lock);
		munmap(addr, len);
		errno = EINVAL;
		return MAP_FAILED;
	}
	r->used = 1;
	logmsg(0, "registered %s at 0x%llx len 0x%llx page %llu", path,
	       (unsigned long long)r->base, (unsigned long long)len,
	       (unsigned long long)r->page_size);

	int64_t deadline = now_ms() + agent_timeout_ms;
	int ok = 0, last_errno = 0;
	while (!ok) {
		int s = connect_agent();
		if (s >= 0) {
			int left = (int)(deadline - now_ms());
			if (hand_over(r, idx, s, 0, left > 0 ? left : 1) == 0) {
				r->conn = s;
				ok = 1;
				break;
			}
			last_errno = errno;
			close(s);
		} else {
			last_errno = errno;
		}
		if (now_ms() >= deadline)
			break;
		usleep(50 * 1000);
	}
	if (!ok) {
		logmsg(1, "no agent acked the RAM registration of %s on %s within %d ms (%s)%s",
		       path, agent_socket, agent_timeout_ms, strerror(last_errno),
		       fail_without_agent ? "; failing the mapping (is the guidecopy agent running?)"
					  : "; waiting in the background");
		if (fail_without_agent) {
			close(r->uffd);
			r->used = 0;
			pthread_mutex_unlock(&lock);
			munmap(addr, len);
			errno = ECONNREFUSED;
			return MAP_FAILED;
		}
	} else {
		logmsg(0, "agent acked %s", path);
	}
	if (!monitor_started && pthread_create(&monitor, NULL, monitor_main, NULL) == 0) {
		pthread_detach(monitor);
		monitor_started = 1;
	}
	pthread_mutex_unlock(&lock);
	return addr;
}

static void *do_mmap(mmap_fn real, void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (!real)
		shim_init();
	real = real ? real : real_mmap;
	void *p = real(addr, len, prot, flags, fd, off);
	if (p == MAP_FAILED || !ram_path || fd < 0 || !(flags & MAP_SHARED) || in_shim)
		return p;
	in_shim = 1;
	int saved = errno;
	void *res = after_map(p, len, fd, off);
	if (res != MAP_FAILED)
		errno = saved;
	in_shim = 0;
	return res;
}

GC_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return do_mmap(real_mmap, addr, len, prot, flags, fd, off);
}

GC_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return do_mmap(real_mmap64, addr, len, prot, flags, fd, off);
}
