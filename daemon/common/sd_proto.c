/*
 * daemon/common/sd_proto - see sd_proto.h.  Written from the protocol
 * descriptions in sd_listen_fds(3), sd_notify(3) and sd_watchdog_enabled(3).
 */
#include "sd_proto.h"
#include "decimal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/*
 * The numbers in systemd's variables are parsed strictly (dc_parse_dec:
 * plain digits, bounded).  systemd writes these variables itself, so
 * anything else means the environment was tampered with or inherited
 * garbage; refusing it is safer than guessing.
 */
int sdp_listen_fds(int *fds, int max)
{
	const char *spid = getenv("LISTEN_PID"), *sfds = getenv("LISTEN_FDS");
	uint64_t pid, n;
	int ret = 0;

	if (!spid || !sfds)
		goto out; /* not socket-activated (a lone variable is meaningless too) */
	if (dc_parse_dec(spid, INT32_MAX, &pid) != 0 || pid == 0 ||
	    dc_parse_dec(sfds, (uint64_t)INT32_MAX - SDP_LISTEN_FDS_START, &n) != 0) {
		ret = -EINVAL;
		goto out;
	}
	/* Variables inherited from a socket-activated parent are not ours. */
	if ((pid_t)pid != getpid())
		goto out;
	for (uint64_t i = 0; i < n; i++) {
		int fd = SDP_LISTEN_FDS_START + (int)i;
		int fl = fcntl(fd, F_GETFD);
		if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) {
			ret = -errno;
			goto out;
		}
	}
	if (n > (uint64_t)(max < 0 ? 0 : max)) {
		ret = -E2BIG;
		goto out;
	}
	for (uint64_t i = 0; i < n; i++)
		fds[i] = SDP_LISTEN_FDS_START + (int)i;
	ret = (int)n;
out:
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return ret;
}

/* Build the address from $NOTIFY_SOCKET; 0 if unset, 1 if usable. */
static int notify_addr(struct sockaddr_un *sa, socklen_t *len)
{
	const char *e = getenv("NOTIFY_SOCKET");
	size_t l;

	if (!e)
		return 0;
	if (e[0] != '/' && e[0] != '@')
		return -EAFNOSUPPORT; /* e.g. "vsock:..." from a VM manager: not for a node daemon */
	l = strlen(e);
	if (l < 2 || l > sizeof(sa->sun_path) - (e[0] == '/' ? 1 : 0))
		return -EINVAL;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, e, l);
	if (e[0] == '@') {
		/* Abstract namespace: a leading NUL and exactly l bytes, no terminator. */
		sa->sun_path[0] = '\0';
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l);
	} else {
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l + 1);
	}
	return 1;
}

static int notify_send(const int *fds, unsigned nfds, const char *fmt, va_list ap)
{
	struct sockaddr_un sa;
	socklen_t salen = 0;
	char stackbuf[512], *msg = stackbuf;
	va_list ap2;
	int ret, n, s;

	if (!fmt || nfds > 253 || (nfds && !fds))
		return -EINVAL;
	for (unsigned i = 0; i < nfds; i++)
		if (fds[i] < 0)
			return -EINVAL;
	ret = notify_addr(&sa, &salen);
	if (ret <= 0)
		return ret;

	va_copy(ap2, ap);
	n = vsnprintf(stackbuf, sizeof(stackbuf), fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= sizeof(stackbuf)) {
		msg = malloc((size_t)n + 1);
		if (!msg)
			return -ENOMEM;
		vsnprintf(msg, (size_t)n + 1, fmt, ap);
	}

	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		ret = -errno;
		goto out;
	}
	/*
	 * A blocking send waits while the receiver's queue is full.  PID 1 may
	 * be busy for a while, so waiting is right (a lost READY=1 fails the
	 * start), but not forever: a hung manager must not hang the daemon's
	 * watchdog thread.  SO_SNDTIMEO bounds it.
	 */
	struct timeval tv = { .tv_sec = 5, .tv_usec = 0 };
	(void)setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

	struct iovec iov = { .iov_base = msg, .iov_len = (size_t)n };
	struct msghdr mh = { .msg_name = &sa, .msg_namelen = salen, .msg_iov = &iov, .msg_iovlen = 1 };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 253)];
	} cm;
	if (nfds) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	ssize_t w;
	do
		w = sendmsg(s, &mh, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		ret = errno == EWOULDBLOCK ? -EAGAIN : -errno;
	else if ((size_t)w != (size_t)n)
		ret = -EMSGSIZE; /* a datagram goes whole or not at all; be safe anyway */
	else
		ret = 1;
	close(s);
out:
	if (msg != stackbuf)
		free(msg);
	return ret;
}

int sdp_notify(const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = notify_send(NULL, 0, fmt, ap);
	va_end(ap);
	return ret;
}

int sdp_notify_fds(const int *fds, unsigned nfds, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = notify_send(fds, nfds, fmt, ap);
	va_end(ap);
	return ret;
}

uint64_t sdp_watchdog_usec(void)
{
	const char *su = getenv("WATCHDOG_USEC"), *sp = getenv("WATCHDOG_PID");
	uint64_t usec, pid;

	if (!su || dc_parse_dec(su, UINT64_MAX, &usec) != 0 || usec == 0)
		return 0;
	if (sp) {
		/* Set for another process (inherited): the watchdog is not ours. */
		if (dc_parse_dec(sp, INT32_MAX, &pid) != 0 || (pid_t)pid != getpid())
			return 0;
	}
	return usec;
}
