/*
 * preload_app - a program that knows nothing of umapd: it maps a file
 * with mmap(MAP_SHARED), checks every byte, writes the first half and
 * unmaps.  daemon.preload runs it under libumapd-preload.so with
 * UMAPD_SOCKET set.  Exit 0 when the data was right.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "umapd_test.h" /* t_pat only (inline) */

int main(int argc, char **argv)
{
	int fd = argc == 2 ? open(argv[1], O_RDWR) : -1;
	off_t len = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
	uint8_t *p;

	if (len <= 0)
		return 2;
	p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return 3;
	for (off_t i = 0; i < len; i++)
		if (p[i] != t_pat((uint64_t)i, 1)) {
			fprintf(stderr, "preload_app: offset %lld: %#x, want %#x\n", (long long)i, p[i], t_pat((uint64_t)i, 1));
			return 4;
		}
	for (off_t i = 0; i < len / 2; i++)
		p[i] = t_pat((uint64_t)i, 2);
	if (munmap(p, (size_t)len) != 0)
		return 5;
	return 0;
}
