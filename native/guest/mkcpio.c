/*
 * mkcpio: write a newc (SVR4, no CRC) cpio archive, the initramfs format the kernel
 * unpacks, from a list of entries on stdin. Runs on the build host.
 *
 * Why not `cpio -o` over a staging directory: the initramfs needs /dev/console (the
 * kernel opens it for /init before any devtmpfs exists), and creating a device node
 * needs root. Writing the archive directly needs no privilege, and with fixed owners and
 * mtimes the same inputs always give the same bytes.
 *
 * Input, one entry per line ('#' starts a comment), as in the kernel's gen_init_cpio:
 *   dir   <name> <mode>
 *   file  <name> <host path> <mode>
 *   slink <name> <target> <mode>
 *   nod   <name> <mode> c|b <major> <minor>
 * Modes are octal permission bits; every entry is owned by 0:0 with mtime 0.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static unsigned long ino = 300000; /* arbitrary start; only uniqueness matters */
static unsigned long offset;       /* bytes written, for 4-byte alignment */

static void out(const void *p, size_t n)
{
	if (fwrite(p, 1, n, stdout) != n) {
		perror("mkcpio: write");
		exit(1);
	}
	offset += n;
}

static void pad4(void)
{
	static const char zeros[4];
	out(zeros, (4 - offset % 4) % 4);
}

static void header(const char *name, unsigned mode, unsigned long size, unsigned rmaj, unsigned rmin)
{
	/* The kernel's names carry no leading '/'. */
	while (*name == '/')
		name++;
	if (size > 0xffffffffUL) {
		fprintf(stderr, "mkcpio: %s: too large for newc (4 GiB limit)\n", name);
		exit(1);
	}
	char h[160];
	int n = snprintf(h, sizeof h, "070701%08lX%08X%08X%08X%08X%08X%08lX%08X%08X%08X%08X%08lX%08X",
			 ino++ & 0xffffffffUL, mode, 0u, 0u, 1u, 0u, size, 0u, 0u, rmaj, rmin,
			 (unsigned long)strlen(name) + 1, 0u);
	if (n != 110) {
		fprintf(stderr, "mkcpio: %s: header field out of range\n", name);
		exit(1);
	}
	out(h, 110);
	out(name, strlen(name) + 1);
	pad4();
}

static unsigned parse_mode(const char *s, int line)
{
	char *end;
	unsigned long m = strtoul(s, &end, 8);
	if (*end || m > 07777) {
		fprintf(stderr, "mkcpio: line %d: bad mode %s\n", line, s);
		exit(1);
	}
	return (unsigned)m;
}

static void add_file(const char *name, const char *path, unsigned mode)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "mkcpio: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	rewind(f);
	header(name, S_IFREG | mode, (unsigned long)size, 0, 0);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		out(buf, n);
	if (ferror(f)) {
		fprintf(stderr, "mkcpio: %s: read error\n", path);
		exit(1);
	}
	fclose(f);
	pad4();
}

int main(void)
{
	char line[4096];
	int ln = 0;
	while (fgets(line, sizeof line, stdin)) {
		ln++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *w[6];
		int n = 0;
		for (char *t = strtok(line, " \t\r\n"); t && n < 6; t = strtok(NULL, " \t\r\n"))
			w[n++] = t;
		if (n == 0)
			continue;
		if (!strcmp(w[0], "dir") && n == 3) {
			header(w[1], S_IFDIR | parse_mode(w[2], ln), 0, 0, 0);
		} else if (!strcmp(w[0], "file") && n == 4) {
			add_file(w[1], w[2], parse_mode(w[3], ln));
		} else if (!strcmp(w[0], "slink") && n == 4) {
			header(w[1], S_IFLNK | parse_mode(w[3], ln), strlen(w[2]), 0, 0);
			out(w[2], strlen(w[2]));
			pad4();
		} else if (!strcmp(w[0], "nod") && n == 6 && (!strcmp(w[3], "c") || !strcmp(w[3], "b"))) {
			unsigned type = w[3][0] == 'c' ? S_IFCHR : S_IFBLK;
			header(w[1], type | parse_mode(w[2], ln), 0, (unsigned)atoi(w[4]), (unsigned)atoi(w[5]));
		} else {
			fprintf(stderr, "mkcpio: line %d: cannot parse entry\n", ln);
			return 1;
		}
	}
	header("TRAILER!!!", 0, 0, 0, 0);
	/* Conventional: pad the archive to a 512-byte multiple. */
	static const char zeros[512];
	out(zeros, (512 - offset % 512) % 512);
	if (fflush(stdout)) {
		perror("mkcpio: write");
		return 1;
	}
	return 0;
}
