/*
 * store_inject - lib/store fault-injection store: the spec parser accepts
 * the documented forms and refuses everything else with -EINVAL and a
 * reason (and survives random and mutated input); the store fails reads,
 * writes and syncs with the named errno at the given rate, fails all
 * reads/writes after N, refuses writes with ENOSPC past its byte budget and
 * accepts them again once store_inject_set raises it, sleeps latency_us,
 * counts what it did, passes data through untouched, and has no extents.
 */
#include "umapd_test.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>

static int nchecks;

static void ok_spec(const char *spec, struct inject_cfg *c)
{
	char why[256] = "";
	int rc = inject_parse(spec, c, why, sizeof(why));
	if (rc != 0)
		t_fail("inject_parse(\"%s\") = %d (%s), want 0", spec, rc, why);
	nchecks++;
}

static void bad_spec(const char *spec, const char *want_in_why)
{
	char why[256] = "";
	struct inject_cfg c;
	int rc = inject_parse(spec, &c, why, sizeof(why));
	if (rc != -EINVAL)
		t_fail("inject_parse(\"%s\") = %d, want -EINVAL", spec ? spec : "(null)", rc);
	if (why[0] == '\0' || (want_in_why && !strstr(why, want_in_why)))
		t_fail("inject_parse(\"%s\"): reason \"%s\" does not mention \"%s\"", spec ? spec : "(null)", why,
		       want_in_why ? want_in_why : "anything");
	nchecks++;
}

static uint64_t rnd_state = 12345;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static void parser(void)
{
	struct inject_cfg c;

	t_step("parser: accepted forms");
	ok_spec("", &c);
	T_CHECK(c.read.err == 0 && c.write.err == 0 && c.enospc_after == UINT64_MAX && c.latency_us == 0 &&
		c.fail_reads_after == UINT64_MAX, "the empty spec injects something");
	ok_spec("read_error=EIO:0.01,write_error=ENOSPC:0.05,enospc_after=1M,latency_us=200,fail_reads_after=7,seed=42",
		&c);
	T_CHECK(c.read.err == EIO && c.read.ppb == 10000000 && c.write.err == ENOSPC && c.write.ppb == 50000000 &&
		c.enospc_after == (1u << 20) && c.latency_us == 200 && c.fail_reads_after == 7 && c.seed == 42,
		"the example spec parsed wrong");
	ok_spec("write_error=EDQUOT", &c);
	T_CHECK(c.write.err == EDQUOT && c.write.ppb == 1000000000, "write_error without a probability");
	ok_spec("sync_error=5:50%", &c);
	T_CHECK(c.sync.err == 5 && c.sync.ppb == 500000000, "sync_error=5:50%%: err %d ppb %u", c.sync.err,
		c.sync.ppb);
	ok_spec("read_error=EROFS:.5,fail_writes_after=0", &c);
	T_CHECK(c.read.ppb == 500000000 && c.fail_writes_after == 0, ".5 and fail_writes_after=0");
	ok_spec("read_error=EIO:0.0000000001", &c);
	T_CHECK(c.read.ppb == 0, "a probability below 10^-9 is 0");
	ok_spec("enospc_after=0,latency_us=10000000", &c);
	T_CHECK(c.enospc_after == 0 && c.latency_us == 10000000, "enospc_after=0, latency_us max");
	ok_spec("enospc_after=3g", &c);
	T_CHECK(c.enospc_after == (3ull << 30), "3g");
	ok_spec("read_error=EIO:1,write_error=EIO:100%", &c);

	t_step("parser: refused forms");
	bad_spec(NULL, "no spec");
	bad_spec(",", "empty");
	bad_spec("read_error=EIO,", "empty");
	bad_spec(",read_error=EIO", "empty");
	bad_spec("read_error=EIO,,seed=1", "empty");
	bad_spec("read_error", "key=value");
	bad_spec("bogus=1", "unknown key");
	bad_spec("READ_ERROR=EIO", "unknown key");
	bad_spec("read_error=EIO,read_error=EIO", "twice");
	bad_spec("read_error=", "errno");
	bad_spec("read_error=EWHAT", "EWHAT");
	bad_spec("read_error=0", "errno");
	bad_spec("read_error=4096", "errno");
	bad_spec("read_error=EIO:", "probability");
	bad_spec("read_error=EIO:1.5", "probability");
	bad_spec("read_error=EIO:101%", "probability");
	bad_spec("read_error=EIO:-0.1", "probability");
	bad_spec("read_error=EIO:0.1x", "probability");
	bad_spec("read_error=EIO:.", "probability");
	bad_spec("enospc_after=", "enospc_after");
	bad_spec("enospc_after=1X", "enospc_after");
	bad_spec("enospc_after=-1", "enospc_after");
	bad_spec("enospc_after=99999999999999999999", "enospc_after");
	bad_spec("enospc_after=16777216T", "enospc_after");
	bad_spec("latency_us=10000001", "latency_us");
	bad_spec("seed=1 ", "seed");
	bad_spec(" seed=1", "unknown key");
	bad_spec("fail_reads_after=+3", "fail_reads_after");
	char longspec[400];
	memset(longspec, 'a', sizeof(longspec) - 1);
	longspec[sizeof(longspec) - 1] = '\0';
	bad_spec(longspec, "longer");
	char maxspec[INJECT_SPEC_MAX + 1];
	snprintf(maxspec, sizeof(maxspec), "seed=");
	memset(maxspec + 5, '7', INJECT_SPEC_MAX - 5);
	maxspec[INJECT_SPEC_MAX] = '\0';
	bad_spec(maxspec, "seed"); /* 250 digits: too large, but parsed without harm */

	t_step("parser: random and mutated input never crashes");
	static const char *const seeds[] = {
		"read_error=EIO:0.01,write_error=ENOSPC:0.05,enospc_after=1M,latency_us=200,fail_reads_after=7,seed=42",
		"sync_error=5:50%", "enospc_after=3g,fail_writes_after=0",
	};
	char s[INJECT_SPEC_MAX + 64];
	int accepted = 0;
	for (int i = 0; i < 200000; i++) {
		size_t n;
		if (i & 1) {
			n = rnd() % (sizeof(s) - 1);
			for (size_t k = 0; k < n; k++)
				s[k] = (char)(rnd() % 255 + 1);
		} else {
			snprintf(s, sizeof(s), "%s", seeds[rnd() % 3]);
			n = strlen(s);
			for (int m = 0; m < 1 + (int)(rnd() % 4); m++) {
				size_t at = n ? rnd() % n : 0;
				static const char alphabet[] = "=,:%.0123456789KMGTkmgtEIOxX- _";
				s[at] = (rnd() & 3) ? alphabet[rnd() % (sizeof(alphabet) - 1)] : (char)(rnd() % 255 + 1);
			}
		}
		s[n] = '\0';
		char why[64]; /* small: reasons are truncated, never overrun */
		int rc = inject_parse(s, &c, why, (rnd() & 7) ? sizeof(why) : 0);
		T_CHECK(rc == 0 || rc == -EINVAL, "inject_parse returned %d", rc);
		if (rc == 0)
			accepted++;
	}
	T_CHECK(inject_parse("seed=1", &c, NULL, 0) == 0, "why may be NULL");
	T_CHECK(inject_parse("x", &c, NULL, 0) == -EINVAL, "why may be NULL on error");
	nchecks += 4;
	printf("parser: %d of 200000 random specs accepted\n", accepted);
}

int main(void)
{
	t_init("store_inject", 60);
	parser();

	struct store *mem = NULL, *s = NULL;
	struct inject_counters n;
	uint8_t buf[8192];
	T_OK(store_memory_open(1 << 20, 0, &mem));
	T_CHECK(store_inject_open(mem, "bogus", &s) == -EINVAL, "store_inject_open with a bad spec");
	T_CHECK(store_inject_set(mem, "") == -EINVAL, "store_inject_set on a store that is not one");

	t_step("pass-through without faults");
	T_OK(store_inject_open(mem, "", &s));
	T_CHECK(store_is_inject(s) && !store_is_inject(mem), "store_is_inject");
	t_fill_pat(buf, sizeof(buf), 4096, 1);
	T_OK(store_write(s, buf, sizeof(buf), 4096));
	memset(buf, 0, sizeof(buf));
	T_OK(store_read(s, buf, sizeof(buf), 4096));
	t_check_pat("read back through the wrapper", buf, sizeof(buf), 4096, 1);
	T_CHECK(store_size(s) == 1 << 20, "size passes through");
	struct store_extent x;
	T_CHECK(store_extent(s, 0, 4096, 0, &x) == -EOPNOTSUPP, "extent");
	T_OK(store_sync(s));

	t_step("errors always");
	T_OK(store_inject_set(s, "read_error=EIO,write_error=EDQUOT,sync_error=EROFS"));
	T_CHECK(store_read(s, buf, 4096, 0) == -EIO, "read_error=EIO");
	T_CHECK(store_write(s, buf, 4096, 0) == -EDQUOT, "write_error=EDQUOT");
	T_CHECK(store_sync(s) == -EROFS, "sync_error=EROFS");
	T_OK(store_inject_set(s, ""));
	memset(buf, 0, sizeof(buf));
	T_OK(store_read(s, buf, sizeof(buf), 4096));
	t_check_pat("the failed write changed nothing", buf, sizeof(buf), 4096, 1);
	nchecks += 9;

	t_step("errors at a rate");
	T_OK(store_inject_set(s, "read_error=ETIMEDOUT:0.25,seed=7"));
	int fails = 0;
	for (int i = 0; i < 4000; i++) {
		int rc = store_read(s, buf, 64, 0);
		T_CHECK(rc == 0 || rc == -ETIMEDOUT, "read returned %d", rc);
		fails += rc != 0;
	}
	T_CHECK(fails > 800 && fails < 1200, "%d of 4000 reads failed at rate 0.25", fails);
	nchecks++;

	t_step("fail_reads_after / fail_writes_after");
	T_OK(store_inject_set(s, "fail_reads_after=3,fail_writes_after=2,write_error=ENOLINK:0"));
	for (int i = 0; i < 3; i++)
		T_OK(store_read(s, buf, 64, 0));
	T_CHECK(store_read(s, buf, 64, 0) == -EIO, "the 4th read after fail_reads_after=3");
	T_CHECK(store_read(s, buf, 64, 0) == -EIO, "and the 5th");
	T_OK(store_write(s, buf, 64, 0));
	T_OK(store_write(s, buf, 64, 0));
	T_CHECK(store_write(s, buf, 64, 0) == -ENOLINK, "the 3rd write after fail_writes_after=2: write_error's errno");
	nchecks += 3;

	t_step("enospc_after, then the budget raised");
	T_OK(store_inject_counters(s, &n));
	uint64_t written = n.bytes_written;
	char spec[64];
	snprintf(spec, sizeof(spec), "enospc_after=%llu", (unsigned long long)(written + 3 * 4096));
	T_OK(store_inject_set(s, spec));
	T_OK(store_write(s, buf, 4096, 0));
	T_OK(store_write(s, buf, 8192, 4096));
	T_CHECK(store_write(s, buf, 1, 0) == -ENOSPC, "a write past the budget");
	T_CHECK(store_write(s, buf, 4096, 0) == -ENOSPC, "and another");
	snprintf(spec, sizeof(spec), "enospc_after=%llu", (unsigned long long)(written + 4 * 4096));
	T_OK(store_inject_set(s, spec));
	T_OK(store_write(s, buf, 4096, 0));
	T_CHECK(store_write(s, buf, 1, 0) == -ENOSPC, "past the raised budget");
	T_OK(store_inject_set(s, ""));
	T_OK(store_write(s, buf, 4096, 0));
	nchecks += 4;

	t_step("latency");
	T_OK(store_inject_set(s, "latency_us=20000"));
	uint64_t t0 = t_now_ns();
	T_OK(store_read(s, buf, 64, 0));
	T_OK(store_write(s, buf, 64, 0));
	uint64_t dt = t_now_ns() - t0;
	T_CHECK(dt >= 40000000, "two ops at latency_us=20000 took %llu ns", (unsigned long long)dt);
	nchecks++;

	t_step("counters");
	T_OK(store_inject_counters(s, &n));
	T_CHECK(n.read_errors == 1 + (uint64_t)fails + 2, "read_errors %llu, want %d",
		(unsigned long long)n.read_errors, 1 + fails + 2);
	T_CHECK(n.write_errors == 2 && n.sync_errors == 1 && n.enospc_errors == 3 && n.delays == 2,
		"write_errors %llu sync_errors %llu enospc_errors %llu delays %llu", (unsigned long long)n.write_errors,
		(unsigned long long)n.sync_errors, (unsigned long long)n.enospc_errors, (unsigned long long)n.delays);
	T_CHECK(n.bytes_written == written + 4 * 4096 + 4096 + 64, "bytes_written %llu",
		(unsigned long long)n.bytes_written);
	T_CHECK(n.syncs == 2 && n.reads >= 4008, "syncs %llu reads %llu", (unsigned long long)n.syncs,
		(unsigned long long)n.reads);
	nchecks += 4;

	t_step("detach returns the inner store, open");
	struct store *inner = store_inject_detach(s);
	T_CHECK(inner == mem, "detach returned %p, want %p", (void *)inner, (void *)mem);
	T_OK(store_read(mem, buf, 8192, 4096));
	T_CHECK(store_inject_detach(mem) == NULL, "detach of a store that is not one");
	T_OK(store_inject_open(mem, "seed=3", &s));
	store_close(s); /* closes mem too */
	t_pass("%d checks: spec parser (accepts, refuses with reasons, 200000 random inputs), errors always and at a "
	       "rate, fail-after, ENOSPC budget raised, latency, counters, detach", nchecks);
}
