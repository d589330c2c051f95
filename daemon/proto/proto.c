/*
 * daemon/proto - framing, encoding and strict decoding of umapd messages.
 */
#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

_Static_assert(sizeof(struct proto_hdr) == PROTO_HDR_SIZE, "header layout");
_Static_assert(sizeof(struct proto_hello) == 16, "hello layout");
_Static_assert(sizeof(struct proto_map) == 40, "map layout");
_Static_assert(sizeof(struct proto_flush) == 32, "flush layout");
_Static_assert(sizeof(struct proto_error) == 104, "error layout");

int proto_check_hdr(const struct proto_hdr *h)
{
	if (h->magic != PROTO_MAGIC)
		return -EPROTO;
	if (h->len > PROTO_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (h->flags != 0)
		return -EINVAL;
	/* A HELLO may come in any header version: the payload negotiates.
	 * Everything else must speak a version we know. */
	if (h->type != PT_HELLO && (h->version < PROTO_VERSION_MIN || h->version > PROTO_VERSION))
		return -EPROTONOSUPPORT;
	return 0;
}

static bool pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* Fixed-size payloads: exact size, the descriptor count, copy out. */
static int fixed(const struct proto_hdr *h, const void *payload, size_t size, int nfds, int want_fds,
		 void *dst)
{
	if (h->len != size || nfds != want_fds)
		return -EBADMSG;
	if (size)
		memcpy(dst, payload, size);
	return 0;
}

static int decode_list(const struct proto_hdr *h, const void *payload, int nfds, size_t entry,
		       struct proto_msg *out)
{
	struct proto_list l;

	if (nfds || h->len < sizeof(l))
		return -EBADMSG;
	memcpy(&l, payload, sizeof(l));
	if (l.reserved || l.count > (PROTO_MAX_PAYLOAD - sizeof(l)) / entry ||
	    h->len != sizeof(l) + (size_t)l.count * entry)
		return -EBADMSG;
	out->count = l.count;
	out->list = (const unsigned char *)payload + sizeof(l);
	return 0;
}

int proto_decode(const struct proto_hdr *h, const void *payload, const int *fds, int nfds,
		 struct proto_msg *out)
{
	uint16_t t = h->type;
	int ret;

	memset(out, 0, sizeof(*out));
	out->hdr = *h;
	if (nfds < 0 || nfds > PROTO_MAX_FDS)
		return -EBADMSG;
	switch (t) {
	case PT_HELLO:
		ret = fixed(h, payload, sizeof(out->u.hello), nfds, 0, &out->u.hello);
		if (ret == 0 && (out->u.hello.reserved || out->u.hello.min_version == 0 ||
				 out->u.hello.min_version > out->u.hello.max_version))
			ret = -EBADMSG;
		if (ret == 0 && out->u.hello.role != PROTO_ROLE_CLIENT && out->u.hello.role != PROTO_ROLE_ADMIN)
			ret = -EINVAL;
		break;
	case PT_HELLO | PT_REPLY:
		ret = fixed(h, payload, sizeof(out->u.hello_reply), nfds, 0, &out->u.hello_reply);
		if (ret == 0 && out->u.hello_reply.reserved0)
			ret = -EBADMSG;
		break;
	case PT_MAP: {
		struct proto_map *m = &out->u.map;

		ret = fixed(h, payload, sizeof(*m), nfds, 2, m);
		if (ret)
			break;
		if (m->reserved || (m->flags & ~PROTO_MAP_WRITABLE))
			return -EBADMSG;
		if (!pow2(m->page_size) || m->page_size < 4096 || m->page_size > (1ull << 30) ||
		    m->len == 0 || m->len % m->page_size || m->offset % m->page_size ||
		    m->addr % 4096 || m->addr == 0)
			return -EINVAL;
		/* No wrap-around, and within what off_t and the address space hold. */
		if (m->offset > (uint64_t)INT64_MAX - m->len || m->addr > UINT64_MAX - m->len ||
		    m->len > ((uint64_t)1 << 47))
			return -EINVAL;
		break;
	}
	case PT_MAP | PT_REPLY:
		ret = fixed(h, payload, sizeof(out->u.map_reply), nfds, 1, &out->u.map_reply);
		break;
	case PT_UNMAP:
		ret = fixed(h, payload, sizeof(out->u.ref), nfds, 0, &out->u.ref);
		break;
	case PT_FLUSH: {
		struct proto_flush *f = &out->u.flush;

		ret = fixed(h, payload, sizeof(*f), nfds, 0, f);
		if (ret == 0 && (f->reserved || f->evict > 1))
			ret = -EBADMSG;
		if (ret == 0 && f->offset > UINT64_MAX - f->len)
			ret = -EINVAL;
		break;
	}
	case PT_STATS:
	case PT_STATUS:
	case PT_CLIENTS:
	case PT_REGIONS:
	case PT_UNMAP | PT_REPLY:
	case PT_FLUSH | PT_REPLY:
	case PT_SET_BUDGET | PT_REPLY:
	case PT_ADMIN_FLUSH | PT_REPLY:
	case PT_EVICT | PT_REPLY:
	case PT_DISCONNECT | PT_REPLY:
		ret = fixed(h, payload, 0, nfds, 0, NULL);
		break;
	case PT_STATS | PT_REPLY:
		ret = fixed(h, payload, sizeof(out->u.stats), nfds, 0, &out->u.stats);
		break;
	case PT_STATUS | PT_REPLY:
		ret = fixed(h, payload, sizeof(out->u.status), nfds, 0, &out->u.status);
		break;
	case PT_CLIENTS | PT_REPLY:
		ret = decode_list(h, payload, nfds, sizeof(struct proto_client_info), out);
		break;
	case PT_REGIONS | PT_REPLY:
		ret = decode_list(h, payload, nfds, sizeof(struct proto_region_info), out);
		break;
	case PT_SET_BUDGET:
		ret = fixed(h, payload, sizeof(out->u.budget), nfds, 0, &out->u.budget);
		if (ret == 0 && out->u.budget.bytes < 4096)
			ret = -EINVAL;
		break;
	case PT_ADMIN_FLUSH:
	case PT_EVICT:
	case PT_DISCONNECT:
		ret = fixed(h, payload, sizeof(out->u.target), nfds, 0, &out->u.target);
		if (ret == 0 && out->u.target.reserved)
			ret = -EBADMSG;
		if (ret == 0 && t == PT_DISCONNECT && out->u.target.client_id == 0)
			ret = -EINVAL;
		break;
	case PT_ERROR:
		ret = fixed(h, payload, sizeof(out->u.error), nfds, 0, &out->u.error);
		if (ret == 0 && (out->u.error.reserved || out->u.error.err <= 0 ||
				 !memchr(out->u.error.msg, 0, sizeof(out->u.error.msg))))
			ret = -EBADMSG;
		break;
	default:
		return -ENOMSG;
	}
	if (ret == 0) {
		for (int i = 0; i < nfds; i++)
			out->fds[i] = fds[i];
		out->nfds = nfds;
	}
	return ret;
}

int proto_session_check(const struct proto_session *s, uint16_t type)
{
	if (type & PT_REPLY || type == PT_ERROR)
		return -EPROTO; /* a peer does not send us replies */
	if (!s->hello_done)
		return type == PT_HELLO ? 0 : -EPROTO;
	switch (type) {
	case PT_HELLO:
		return -EPROTO;
	case PT_MAP:
	case PT_UNMAP:
	case PT_FLUSH:
		return s->role == PROTO_ROLE_CLIENT ? 0 : -EPERM;
	case PT_STATS:
		return 0;
	case PT_STATUS:
	case PT_CLIENTS:
	case PT_REGIONS:
	case PT_SET_BUDGET:
	case PT_ADMIN_FLUSH:
	case PT_EVICT:
	case PT_DISCONNECT:
		return s->role == PROTO_ROLE_ADMIN ? 0 : -EPERM;
	default:
		return -ENOMSG;
	}
}

void proto_close_fds(int *fds, int nfds)
{
	for (int i = 0; i < nfds; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

void proto_rx_init(struct proto_rx *rx)
{
	memset(rx, 0, sizeof(*rx));
	for (int i = 0; i < PROTO_MAX_FDS; i++)
		rx->fds[i] = -1;
}

void proto_rx_reset(struct proto_rx *rx)
{
	proto_close_fds(rx->fds, rx->nfds);
	rx->nfds = 0;
	rx->hgot = rx->pgot = 0;
	rx->fd_overflow = false;
}

void proto_rx_free(struct proto_rx *rx)
{
	proto_rx_reset(rx);
	free(rx->payload);
	rx->payload = NULL;
}

/* Take the descriptors of one recvmsg; any beyond a frame's maximum are closed. */
static void take_fds(struct proto_rx *rx, struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int *p = (int *)CMSG_DATA(c);

		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, p + i, sizeof(fd));
			if (rx->nfds < PROTO_MAX_FDS) {
				rx->fds[rx->nfds++] = fd;
			} else {
				close(fd);
				rx->fd_overflow = true;
			}
		}
	}
	if (mh->msg_flags & MSG_CTRUNC)
		rx->fd_overflow = true; /* the kernel closed what did not fit */
}

int proto_rx_step(int sock, struct proto_rx *rx)
{
	for (;;) {
		unsigned char *dst;
		size_t want;
		struct proto_hdr h;

		if (rx->hgot < PROTO_HDR_SIZE) {
			dst = rx->hdr + rx->hgot;
			want = PROTO_HDR_SIZE - rx->hgot;
		} else {
			memcpy(&h, rx->hdr, sizeof(h));
			if (rx->pgot == h.len)
				return rx->fd_overflow ? -EBADMSG : 1;
			dst = rx->payload + rx->pgot;
			want = h.len - rx->pgot;
		}
		/* Room for more descriptors than allowed, so an overflow is seen
		 * (and closed) rather than silently truncated. */
		union {
			char buf[CMSG_SPACE(sizeof(int) * (PROTO_MAX_FDS + 2))];
			struct cmsghdr align;
		} cm;
		struct iovec iov = { dst, want };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
				     .msg_controllen = sizeof(cm.buf) };
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		}
		take_fds(rx, &mh);
		if (n == 0)
			return rx->hgot == 0 ? -EPIPE : -ECONNRESET;
		if (rx->hgot < PROTO_HDR_SIZE) {
			rx->hgot += (size_t)n;
			if (rx->hgot == PROTO_HDR_SIZE) {
				int ret;

				memcpy(&h, rx->hdr, sizeof(h));
				ret = proto_check_hdr(&h);
				if (ret < 0)
					return ret;
				if (h.len && !rx->payload) {
					rx->payload = malloc(PROTO_MAX_PAYLOAD);
					if (!rx->payload)
						return -ENOMEM;
				}
			}
		} else {
			rx->pgot += (size_t)n;
		}
	}
}

int proto_rx_frame(int sock, struct proto_rx *rx)
{
	int ret;

	/* A blocking socket never returns 0 from a step. */
	while ((ret = proto_rx_step(sock, rx)) == 0)
		;
	return ret;
}

int proto_send(int sock, uint16_t type, uint16_t version, uint64_t seq, const void *payload,
	       uint32_t len, const int *fds, int nfds, bool nonblock)
{
	struct proto_hdr h = { PROTO_MAGIC, version, type, 0, len, seq };
	union {
		char buf[CMSG_SPACE(sizeof(int) * PROTO_MAX_FDS)];
		struct cmsghdr align;
	} cm;
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, len } };
	size_t total = sizeof(h) + len, sent = 0;
	int flags = MSG_NOSIGNAL | (nonblock ? MSG_DONTWAIT : 0);

	if (len > PROTO_MAX_PAYLOAD || nfds < 0 || nfds > PROTO_MAX_FDS)
		return -EINVAL;
	while (sent < total) {
		struct msghdr mh = { 0 };
		struct iovec v[2];
		int nv = 0;
		size_t skip = sent;

		for (int i = 0; i < 2; i++) {
			if (skip >= iov[i].iov_len) {
				skip -= iov[i].iov_len;
				continue;
			}
			v[nv].iov_base = (char *)iov[i].iov_base + skip;
			v[nv].iov_len = iov[i].iov_len - skip;
			skip = 0;
			nv++;
		}
		mh.msg_iov = v;
		mh.msg_iovlen = (size_t)nv;
		if (sent == 0 && nfds > 0) {
			memset(&cm, 0, sizeof(cm));
			mh.msg_control = cm.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
			struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
			memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
		}
		ssize_t n = sendmsg(sock, &mh, flags);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		sent += (size_t)n;
	}
	return 0;
}

int proto_send_error(int sock, uint16_t version, uint64_t seq, int err, const char *msg, bool nonblock)
{
	struct proto_error e;

	memset(&e, 0, sizeof(e));
	e.err = err > 0 ? err : EIO;
	if (msg) {
		strncpy(e.msg, msg, sizeof(e.msg) - 1);
	}
	return proto_send(sock, PT_ERROR, version, seq, &e, sizeof(e), NULL, 0, nonblock);
}

const char *proto_type_name(uint16_t type)
{
	static const struct {
		uint16_t t;
		const char *n;
	} names[] = {
		{ PT_HELLO, "HELLO" }, { PT_MAP, "MAP" }, { PT_UNMAP, "UNMAP" }, { PT_FLUSH, "FLUSH" },
		{ PT_STATS, "STATS" }, { PT_STATUS, "STATUS" }, { PT_CLIENTS, "CLIENTS" },
		{ PT_REGIONS, "REGIONS" }, { PT_SET_BUDGET, "SET_BUDGET" }, { PT_ADMIN_FLUSH, "ADMIN_FLUSH" },
		{ PT_EVICT, "EVICT" }, { PT_DISCONNECT, "DISCONNECT" }, { PT_ERROR, "ERROR" },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].t == (type & ~PT_REPLY))
			return names[i].n;
	return "unknown";
}
