/*
 * shim-peer: a process that is not QEMU playing either end of the shim socket, for the
 * local-attacker tests (docs/security.md, "Local users"). One line per step on stdout.
 *
 *   shim-peer send SOCKET FD-KIND [CLAIMED-RAM-PATH] [WAIT-MS]
 *       connects to SOCKET (retrying for WAIT-MS, default 0, so it can be there before QEMU)
 *       and sends a well-formed shim hello with an fd of FD-KIND:
 *         uffd     a userfaultfd of its own (UFFD_USER_MODE_ONLY: no sysctl needed) registered
 *                  on a MAP_SHARED tmpfs file it made (/dev/shm/shim-peer.PID)
 *         memfd    a memfd, which is not a userfaultfd
 *       The hello names CLAIMED-RAM-PATH (default: the file it really mapped).
 *       Prints CONNECTED, SENT, then ACKED (the agent took it) or CLOSED (refused); or
 *       CONNECT-FAILED <errno text>.
 *   shim-peer rebind SOCKET [WAIT-MS]
 *       unlinks SOCKET and binds its own SOCK_SEQPACKET listener there (UNLINK-FAILED /
 *       BIND-FAILED <errno text> if it may not), then waits WAIT-MS (default 5000) for a shim:
 *       GOT-FD <readlink of the fd> if one handed it an fd, NO-FD if a peer came without one,
 *       NO-PEER if none came.
 *   Exit 0 after a complete run whatever the agent or shim did; 2 on bad usage or local errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

#define LEN (1 << 20)

struct shim_hello { /* native/shim/shim.c */
	uint32_t magic, version;
	uint64_t base, length, page_size, ioctls, file_offset;
	uint32_t pid, path_len, region_id, flags;
};

static void say(const char *what, const char *detail)
{
	printf(detail ? "%s %s\n" : "%s\n", what, detail);
	fflush(stdout);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct sockaddr_un address(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strncpy(sa.sun_path, path, sizeof sa.sun_path - 1);
	return sa;
}

/* A uffd of our own on our own shared tmpfs mapping; *base and path_out describe it. */
static int own_uffd(uint64_t *base, char *path_out, size_t n)
{
	snprintf(path_out, n, "/dev/shm/shim-peer.%d", (int)getpid());
	int f = open(path_out, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (f < 0 || ftruncate(f, LEN) < 0)
		return -1;
	void *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
	close(f);
	unlink(path_out); /* the mapping keeps it; nothing left behind */
	snprintf(path_out + strlen(path_out), n - strlen(path_out), " (deleted)");
	if (p == MAP_FAILED)
		return -1;
	/* UFFD_USER_MODE_ONLY: an unprivileged process may create a uffd that handles only
	 * user-mode faults even with vm.unprivileged_userfaultfd=0 (kernel >= 5.11). */
	int u = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (u < 0)
		return -1;
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MISSING_SHMEM };
	struct uffdio_register reg = { .range = { (uintptr_t)p, LEN }, .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(u, UFFDIO_API, &api) < 0 || ioctl(u, UFFDIO_REGISTER, &reg) < 0)
		return -1;
	*base = (uintptr_t)p;
	return u;
}

static int send_hello(int argc, char **argv)
{
	const char *sock = argv[2], *kind = argv[3];
	const char *claim = argc > 4 && *argv[4] ? argv[4] : NULL;
	int wait_ms = argc > 5 ? atoi(argv[5]) : 0;
	char path[256];
	uint64_t base = 0x7f0000000000ull;
	int fd;
	if (strcmp(kind, "uffd") == 0) {
		fd = own_uffd(&base, path, sizeof path);
	} else if (strcmp(kind, "memfd") == 0) {
		fd = (int)syscall(SYS_memfd_create, "shim-peer", 0);
		snprintf(path, sizeof path, "/dev/shm/not-a-ram-file");
	} else {
		return 2;
	}
	if (fd < 0) {
		say("LOCAL-ERROR", strerror(errno));
		return 2;
	}
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = address(sock);
	int64_t deadline = now_ms() + wait_ms;
	while (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
		if (now_ms() >= deadline) {
			say("CONNECT-FAILED", strerror(errno));
			return 0;
		}
		usleep(1000);
	}
	say("CONNECTED", NULL);
	const char *named = claim ? claim : path;
	struct shim_hello h = { .magic = 0x31534347u, .version = 1, .base = base, .length = LEN,
		.page_size = 4096, .pid = (uint32_t)getpid(), .path_len = (uint32_t)strlen(named) };
	struct iovec iov[2] = { { &h, sizeof h }, { (void *)named, h.path_len } };
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof fd);
	if (sendmsg(s, &mh, MSG_NOSIGNAL) < 0) {
		say("SEND-FAILED", strerror(errno));
		return 0;
	}
	say("SENT", NULL);
	/* The agent acks a registration it keeps and closes one it refuses. */
	struct pollfd p = { .fd = s, .events = POLLIN };
	char ack[16];
	if (poll(&p, 1, 15000) > 0 && recv(s, ack, sizeof ack, 0) == (ssize_t)sizeof ack)
		say("ACKED", NULL);
	else
		say("CLOSED", NULL);
	return 0;
}

static int rebind(int argc, char **argv)
{
	const char *sock = argv[2];
	int wait_ms = argc > 3 ? atoi(argv[3]) : 5000;
	if (unlink(sock) < 0 && errno != ENOENT)
		say("UNLINK-FAILED", strerror(errno));
	int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = address(sock);
	if (bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 4) < 0) {
		say("BIND-FAILED", strerror(errno));
		return 0;
	}
	say("LISTENING", NULL);
	struct pollfd p = { .fd = l, .events = POLLIN };
	if (poll(&p, 1, wait_ms) <= 0) {
		say("NO-PEER", NULL);
		unlink(sock);
		return 0;
	}
	int c = accept(l, NULL, NULL);
	char buf[8192], cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { buf, sizeof buf };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
	p.fd = c;
	int got = -1;
	if (poll(&p, 1, 3000) > 0 && recvmsg(c, &mh, 0) > 0) {
		struct cmsghdr *m = CMSG_FIRSTHDR(&mh);
		if (m && m->cmsg_type == SCM_RIGHTS)
			memcpy(&got, CMSG_DATA(m), sizeof got);
	}
	if (got >= 0) {
		char link[64], what[256] = { 0 };
		snprintf(link, sizeof link, "/proc/self/fd/%d", got);
		if (readlink(link, what, sizeof what - 1) < 0)
			snprintf(what, sizeof what, "?");
		say("GOT-FD", what);
	} else {
		say("NO-FD", NULL);
	}
	unlink(sock);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "send") == 0)
		return send_hello(argc, argv);
	if (argc >= 3 && strcmp(argv[1], "rebind") == 0)
		return rebind(argc, argv);
	fprintf(stderr, "usage: shim-peer send SOCKET uffd|memfd [CLAIMED-RAM-PATH] [WAIT-MS]\n"
			"       shim-peer rebind SOCKET [WAIT-MS]\n");
	return 2;
}
