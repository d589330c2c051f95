/*
 * daemon.proto - the protocol's rejections: every decoder check on its
 * own (no daemon), then a live daemon fed malformed, truncated, oversized
 * and out-of-order messages, descriptors it must close, and every file of
 * the fuzz corpus (tests/fuzz/corpus/proto) as an ordinary test: each gets
 * an error reply or a disconnect, the daemon keeps serving, and it holds
 * no more descriptors than before.
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "dtest.h"
#include "umapd_test.h"

static struct proto_hdr H(uint16_t type, uint32_t len)
{
	struct proto_hdr h = { PROTO_MAGIC, PROTO_VERSION, type, 0, len, 1 };

	return h;
}

static int dec(uint16_t type, const void *p, uint32_t len, int nfds)
{
	struct proto_hdr h = H(type, len);
	struct proto_msg m;
	int fds[2] = { 100, 101 };
	int ret = proto_check_hdr(&h);

	return ret ? ret : proto_decode(&h, p, fds, nfds, &m);
}

#define EXPECT(expr, want)                                                                     \
	do {                                                                                   \
		int r_ = (expr);                                                               \
		if (r_ != (want))                                                              \
			t_fail("%s: got %d (%s), want %s", #expr, r_, t_errname(-r_), #want); \
		checks++;                                                              \
	} while (0)

static int checks;

static void decoder_checks(void)
{
	struct proto_hello he = { 1, 1, PROTO_ROLE_CLIENT, 0 };
	struct proto_map mp = { 0x7f0000000000ull, 1 << 20, 0, 4096, PROTO_MAP_WRITABLE, 0 };
	struct proto_hdr h;
	struct proto_session s = { 0 };
	unsigned char big[64];

	t_step("decoder: headers");
	h = H(PT_HELLO, 16);
	h.magic = 0x12345678;
	EXPECT(proto_check_hdr(&h), -EPROTO);
	h = H(PT_HELLO, PROTO_MAX_PAYLOAD + 1);
	EXPECT(proto_check_hdr(&h), -EMSGSIZE);
	h = H(PT_STATS, 0);
	h.version = PROTO_VERSION + 1;
	EXPECT(proto_check_hdr(&h), -EPROTONOSUPPORT);
	h.version = 0;
	EXPECT(proto_check_hdr(&h), -EPROTONOSUPPORT);
	h = H(PT_STATS, 0);
	h.flags = 4;
	EXPECT(proto_check_hdr(&h), -EINVAL);

	t_step("decoder: HELLO");
	EXPECT(dec(PT_HELLO, &he, sizeof(he), 0), 0);
	EXPECT(dec(PT_HELLO, &he, sizeof(he) - 1, 0), -EBADMSG);
	memset(big, 0, sizeof(big));
	memcpy(big, &he, sizeof(he));
	EXPECT(dec(PT_HELLO, big, sizeof(he) + 1, 0), -EBADMSG);
	EXPECT(dec(PT_HELLO, &he, sizeof(he), 1), -EBADMSG); /* a descriptor it must not carry */
	he.reserved = 1;
	EXPECT(dec(PT_HELLO, &he, sizeof(he), 0), -EBADMSG);
	he.reserved = 0;
	he.min_version = 3;
	he.max_version = 2;
	EXPECT(dec(PT_HELLO, &he, sizeof(he), 0), -EBADMSG);
	he.min_version = he.max_version = 1;
	he.role = 7;
	EXPECT(dec(PT_HELLO, &he, sizeof(he), 0), -EINVAL);

	t_step("decoder: MAP");
	EXPECT(dec(PT_MAP, &mp, sizeof(mp), 2), 0);
	EXPECT(dec(PT_MAP, &mp, sizeof(mp), 0), -EBADMSG);
	EXPECT(dec(PT_MAP, &mp, sizeof(mp), 1), -EBADMSG);
	EXPECT(dec(PT_MAP, &mp, sizeof(mp), 3), -EBADMSG);
	EXPECT(dec(PT_MAP, &mp, sizeof(mp) - 8, 2), -EBADMSG);
	mp.flags = 0x10;
	EXPECT(dec(PT_MAP, &mp, sizeof(mp), 2), -EBADMSG);
	mp.flags = 0;
	mp.page_size = 12288;
	EXPECT(dec(PT_MAP, &mp, sizeof(mp), 2), -EINVAL);
	mp.page_size = 2048;
	EXPECT(dec(PT_MAP, &mp, sizeof(mp), 2), -EINVAL);
	mp.page_size = 8192;
	mp.len = 4096;
	EXPECT(dec(PT_MAP, &mp, sizeof(mp), 2), -EINVAL);
	mp.len = 0;
	EXPECT(dec(PT_MAP, &mp, sizeof(mp), 2), -EINVAL);
	mp.len = 8192;
	mp.offset = 4096;
	EXPECT(dec(PT_MAP, &mp, sizeof(mp), 2), -EINVAL);
	mp.offset = (uint64_t)INT64_MAX - 8191;
	mp.offset &= ~(uint64_t)8191;
	EXPECT(dec(PT_MAP, &mp, sizeof(mp), 2), -EINVAL);
	mp.offset = 0;
	mp.addr = UINT64_MAX - 8191;
	EXPECT(dec(PT_MAP, &mp, sizeof(mp), 2), -EINVAL);
	mp.addr = 0x1001;
	EXPECT(dec(PT_MAP, &mp, sizeof(mp), 2), -EINVAL);

	t_step("decoder: the rest");
	{
		struct proto_flush fl = { 1, UINT64_MAX - 1, 4, 0, 0 };
		struct proto_target tg = { 0, 0 };
		struct proto_budget b = { 100 };
		struct proto_list l = { 3, 0 };

		EXPECT(dec(PT_FLUSH, &fl, sizeof(fl), 0), -EINVAL);
		fl.offset = 0;
		fl.evict = 2;
		EXPECT(dec(PT_FLUSH, &fl, sizeof(fl), 0), -EBADMSG);
		EXPECT(dec(PT_DISCONNECT, &tg, sizeof(tg), 0), -EINVAL);
		tg.reserved = 1;
		EXPECT(dec(PT_EVICT, &tg, sizeof(tg), 0), -EBADMSG);
		EXPECT(dec(PT_SET_BUDGET, &b, sizeof(b), 0), -EINVAL);
		EXPECT(dec(PT_STATS, big, 1, 0), -EBADMSG);
		EXPECT(dec(0x1234, NULL, 0, 0), -ENOMSG);
		EXPECT(dec(PT_CLIENTS | PT_REPLY, &l, sizeof(l), 0), -EBADMSG);
	}

	t_step("session order");
	EXPECT(proto_session_check(&s, PT_MAP), -EPROTO);
	EXPECT(proto_session_check(&s, PT_STATUS), -EPROTO);
	EXPECT(proto_session_check(&s, PT_HELLO), 0);
	s.hello_done = true;
	s.role = PROTO_ROLE_CLIENT;
	s.version = 1;
	EXPECT(proto_session_check(&s, PT_HELLO), -EPROTO);
	EXPECT(proto_session_check(&s, PT_SET_BUDGET), -EPERM);
	EXPECT(proto_session_check(&s, PT_MAP | PT_REPLY), -EPROTO);
	EXPECT(proto_session_check(&s, PT_ERROR), -EPROTO);
	EXPECT(proto_session_check(&s, 999), -ENOMSG);
	s.role = PROTO_ROLE_ADMIN;
	EXPECT(proto_session_check(&s, PT_MAP), -EPERM);
	EXPECT(proto_session_check(&s, PT_STATUS), 0);
}

static int conn(const struct dt_daemon *d)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, d->sock);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		t_fail("connect: %s", strerror(errno));
	return s;
}

static int nfds_of(pid_t pid)
{
	char path[64];
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		t_fail("opendir %s", path);
	while (readdir(dir))
		n++;
	closedir(dir);
	return n;
}

/* Read replies until the daemon closes or goes quiet; returns the number
 * of error replies, *closed whether it disconnected. */
static int drain(int s, bool *closed)
{
	struct proto_rx rx;
	int errors = 0;

	*closed = false;
	proto_rx_init(&rx);
	for (;;) {
		struct pollfd p = { s, POLLIN, 0 };

		if (poll(&p, 1, 300) <= 0)
			break;
		int ret = proto_rx_frame(s, &rx);

		if (ret != 1) {
			*closed = true;
			break;
		}
		struct proto_hdr h;

		memcpy(&h, rx.hdr, sizeof(h));
		if (h.type == PT_ERROR)
			errors++;
		proto_rx_reset(&rx);
	}
	proto_rx_free(&rx);
	return errors;
}

static void send_raw(int s, const void *p, size_t n)
{
	if (send(s, p, n, MSG_NOSIGNAL) != (ssize_t)n)
		t_fail("send: %s", strerror(errno));
}

static void live_checks(struct dt_daemon *d)
{
	struct proto_hello he = { 1, 1, PROTO_ROLE_CLIENT, 0 };
	struct proto_map mp = { 0x7f0000000000ull, 1 << 20, 0, 4096, 0, 0 };
	int base, s, fds[3], ret;
	bool closed;
	struct proto_msg m;
	struct proto_rx rx;

	proto_rx_init(&rx);
	base = nfds_of(d->pid);

	t_step("live: MAP before HELLO, with descriptors");
	s = conn(d);
	fds[0] = open("/dev/null", O_RDONLY);
	fds[1] = open("/dev/zero", O_RDONLY);
	ret = proto_send(s, PT_MAP, 1, 1, &mp, sizeof(mp), fds, 2, false);
	T_CHECK(ret == 0, "send MAP");
	T_CHECK(drain(s, &closed) == 1 && !closed, "MAP before HELLO: want one error reply and the connection kept");
	t_step("live: HELLO, then MAP whose second descriptor is not a userfaultfd");
	T_CHECK(dt_request(s, PT_HELLO, &he, sizeof(he), &m, &rx) == 0, "HELLO after a refused message");
	{
		char path[256];
		int f;

		dt_tmpfile(path, 4096, 1);
		f = open(path, O_RDONLY);
		int two[2] = { f, fds[1] };

		proto_send(s, PT_MAP, 1, 2, &mp, sizeof(mp), two, 2, false);
		T_CHECK(drain(s, &closed) == 1 && !closed, "MAP with /dev/zero as userfaultfd: want an error reply");
		close(f);
	}
	t_step("live: MAP with an O_APPEND backing file and a real userfaultfd");
	{
		char path[256];
		int f, u = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		struct proto_map wm = mp;

		dt_tmpfile(path, 4096, 1);
		f = open(path, O_RDWR | O_APPEND);
		if (u < 0)
			t_skip("no userfaultfd here: %s", strerror(errno));
		int two[2] = { f, u };

		wm.flags = PROTO_MAP_WRITABLE;
		proto_send(s, PT_MAP, 1, 3, &wm, sizeof(wm), two, 2, false);
		T_CHECK(drain(s, &closed) == 1 && !closed, "MAP of an O_APPEND file: want an error reply");
		close(f);
		close(u);
	}
	t_step("live: a MAP with three descriptors");
	fds[2] = open("/dev/null", O_RDONLY);
	{
		struct proto_hdr h = H(PT_MAP, sizeof(mp));
		char buf[sizeof(h) + sizeof(mp)];
		union {
			char b[CMSG_SPACE(3 * sizeof(int))];
			struct cmsghdr a;
		} cm;
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

		memcpy(buf, &h, sizeof(h));
		memcpy(buf + sizeof(h), &mp, sizeof(mp));
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(3 * sizeof(int));
		memcpy(CMSG_DATA(c), fds, 3 * sizeof(int));
		T_CHECK(sendmsg(s, &mh, MSG_NOSIGNAL) == (ssize_t)sizeof(buf), "sendmsg");
		drain(s, &closed);
		T_CHECK(closed, "three descriptors: want a disconnect");
	}
	close(s);
	proto_close_fds(fds, 3);

	t_step("live: oversized frame");
	s = conn(d);
	{
		struct proto_hdr h = H(PT_HELLO, 1u << 24);

		send_raw(s, &h, sizeof(h));
		T_CHECK(drain(s, &closed) == 1 && closed, "oversized: want an error reply and a disconnect");
	}
	close(s);
	t_step("live: truncated frame, then the client goes away");
	s = conn(d);
	{
		struct proto_hdr h = H(PT_HELLO, sizeof(he));

		send_raw(s, &h, 10);
	}
	close(s);
	s = conn(d);
	{
		struct proto_hdr h = H(PT_HELLO, sizeof(he));

		send_raw(s, &h, sizeof(h));
		send_raw(s, &he, 5);
	}
	close(s);
	t_step("live: half a header, then silence: request_timeout_ms (300) ends the connection");
	s = conn(d);
	{
		struct proto_hdr h = H(PT_HELLO, sizeof(he));
		uint64_t t0 = t_now_ns();

		send_raw(s, &h, 7);
		drain(s, &closed); /* returns after 300 ms of quiet, or at the close */
		while (!closed && t_now_ns() - t0 < 3000000000ull)
			drain(s, &closed);
		T_CHECK(closed, "a connection stalled inside a frame was still open after 3 s");
	}
	close(s);
	t_step("live: unknown type, then a good request on the same connection");
	s = conn(d);
	T_CHECK(dt_request(s, PT_HELLO, &he, sizeof(he), &m, &rx) == 0, "HELLO");
	T_CHECK(dt_request(s, 0x2345, "abc", 3, &m, &rx) == -ENOMSG, "unknown type: want ENOMSG");
	T_CHECK(dt_request(s, PT_STATS, NULL, 0, &m, &rx) == 0, "STATS after an unknown type");
	T_CHECK(dt_request(s, PT_SET_BUDGET, &(struct proto_budget){ 1 << 20 }, 8, &m, &rx) == -EPERM,
		"SET_BUDGET in a client session: want EPERM");
	T_CHECK(dt_request(s, PT_HELLO, &he, sizeof(he), &m, &rx) == -EPROTO, "second HELLO: want EPROTO");
	T_CHECK(dt_request(s, PT_UNMAP, &(struct proto_region_ref){ 77 }, 8, &m, &rx) == -EINVAL,
		"UNMAP of an unknown region: want EINVAL");
	close(s);
	t_step("live: version negotiation");
	s = conn(d);
	he.min_version = PROTO_VERSION + 1;
	he.max_version = PROTO_VERSION + 5;
	T_CHECK(dt_request(s, PT_HELLO, &he, sizeof(he), &m, &rx) == -EPROTONOSUPPORT, "future-only HELLO: want EPROTONOSUPPORT");
	he.min_version = 1;
	T_CHECK(dt_request(s, PT_HELLO, &he, sizeof(he), &m, &rx) == 0 && m.u.hello_reply.version == PROTO_VERSION,
		"HELLO 1..%d: want version %d", PROTO_VERSION + 5, PROTO_VERSION);
	close(s);
	proto_rx_free(&rx);

	usleep(200000);
	dt_daemon_alive(d, "after malformed messages");
	int now = nfds_of(d->pid);

	T_CHECK(now <= base, "the daemon holds %d descriptors, %d before: it leaked what came with refused messages",
		now, base);
}

static int corpus_replay(struct dt_daemon *d)
{
	DIR *dir = opendir(UMAPD_PROTO_CORPUS);
	struct dirent *e;
	int n = 0;

	if (!dir)
		t_fail("opendir %s: %s", UMAPD_PROTO_CORPUS, strerror(errno));
	while ((e = readdir(dir))) {
		char path[512];
		unsigned char buf[8192];
		bool closed;
		int fd, s;
		ssize_t len;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", UMAPD_PROTO_CORPUS, e->d_name);
		fd = open(path, O_RDONLY);
		len = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
		if (fd >= 0)
			close(fd);
		if (len < 0)
			t_fail("read %s", path);
		t_step("corpus %s", e->d_name);
		s = conn(d);
		if (len > 0 && send(s, buf, (size_t)len, MSG_NOSIGNAL) < 0 && errno != EPIPE && errno != ECONNRESET)
			t_fail("send %s: %s", e->d_name, strerror(errno));
		shutdown(s, SHUT_WR);
		drain(s, &closed);
		close(s);
		dt_daemon_alive(d, e->d_name);
		n++;
	}
	closedir(dir);
	return n;
}

int main(void)
{
	struct dt_daemon d;
	struct proto_status st;
	int n;

	t_init("daemon.proto", 60);
	decoder_checks();
	t_step("start the daemon");
	dt_daemon_start(&d, "8M", (const char *const[]){ "--request-timeout-ms=300", NULL });
	live_checks(&d);
	n = corpus_replay(&d);
	dt_status(&d, &st);
	T_CHECK(st.regions == 0, "%llu regions left from refused MAPs", (unsigned long long)st.regions);
	dt_daemon_cleanup(&d);
	t_pass("%d decoder checks; live daemon: refused messages answered or disconnected, descriptors closed; "
	       "%d corpus files replayed", checks, n);
}
