/*
 * fuzz_proto - the daemon's wire protocol (daemon/proto): framing
 * (proto_rx_step over a socket pair), header checks, strict decoding and
 * the session order, as the server applies them to what a client sends.
 *
 * Input: a byte stream written to one end of a UNIX stream socket pair and
 * read back as frames from the other, exactly as the server reads a
 * client.  Descriptors cannot be fuzzed through the bytes, so each frame is
 * decoded as carrying (type byte % 3) placeholder descriptors.
 * Properties, besides not crashing:
 *  - a decoded message never claims more descriptors than a frame may
 *    carry, and list replies point inside the frame;
 *  - a header that passes proto_check_hdr has len <= PROTO_MAX_PAYLOAD;
 *  - a message refused by the session check or the decoder leaves the
 *    session as it was.
 */
#include "../daemon/proto/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	struct proto_rx rx;
	struct proto_session sess = { 0 };
	size_t off = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	proto_rx_init(&rx);
	for (;;) {
		/* Feed what the socket takes, then read frames until it would block. */
		while (off < size) {
			ssize_t n = write(sv[0], data + off, size - off);

			if (n <= 0)
				break;
			off += (size_t)n;
		}
		if (off == size && sv[0] >= 0) {
			close(sv[0]); /* end of stream after the input */
			sv[0] = -1;
		}
		int ret = proto_rx_step(sv[1], &rx);

		if (ret == 0) {
			if (sv[0] < 0)
				abort(); /* closed writer: a step must end in a frame or an error */
			continue;
		}
		if (ret < 0)
			break; /* the server drops the connection */
		struct proto_hdr h;
		struct proto_msg m;
		int fds[PROTO_MAX_FDS] = { -1, -1 };
		struct proto_session before = sess;

		memcpy(&h, rx.hdr, sizeof(h));
		if (h.len > PROTO_MAX_PAYLOAD || proto_check_hdr(&h) != 0)
			abort(); /* rx_step returned a frame whose header is bad */
		int nfds = (h.type & 0xff) % 3;

		ret = proto_session_check(&sess, h.type);
		if (ret == 0)
			ret = proto_decode(&h, rx.payload, fds, nfds, &m);
		if (ret == 0) {
			if (m.nfds != nfds || m.nfds > PROTO_MAX_FDS)
				abort();
			if (m.list) {
				size_t entry = h.type == (PT_CLIENTS | PT_REPLY) ? sizeof(struct proto_client_info)
									    : sizeof(struct proto_region_info);
				const unsigned char *l = m.list;

				if (l < rx.payload || l + (size_t)m.count * entry > rx.payload + h.len)
					abort();
			}
			if (h.type == PT_HELLO) {
				sess.hello_done = true;
				sess.version = PROTO_VERSION;
				sess.role = m.u.hello.role;
			}
		} else if (memcmp(&before, &sess, sizeof(sess)) != 0) {
			abort();
		}
		proto_rx_reset(&rx);
	}
	proto_rx_free(&rx);
	if (sv[0] >= 0)
		close(sv[0]);
	close(sv[1]);
	return 0;
}
