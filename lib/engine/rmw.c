/*
 * Read-modify-write detection: install a read miss writable and dirty when
 * this region's reads are usually followed by writes.
 *
 * A read miss is normally installed clean and write-protected, so that a
 * page the application only reads is dropped without a write.  If the
 * application then writes it, that costs a second round trip (the
 * write-protect fault) and an UFFDIO_WRITEPROTECT to lift the protection,
 * whose TLB flush interrupts every other CPU running the process: on a
 * 2-vCPU VM that flush alone is tens of microseconds, as much as the rest
 * of the fault.  Random read-modify-write (a hash table update, a graph's
 * edge weights, bench_io's rmw) pays it on nearly every miss.
 *
 * The evidence is gathered from probes: a page installed clean by a read
 * miss is marked; its first write (a WP fault) counts for, its eviction
 * while still clean counts against.  Once the balance passes RMW_ON, read
 * misses are installed dirty, except one in RMW_PROBE_EVERY, which is
 * still installed clean so that the evidence keeps coming: if the
 * application stops writing what it reads, those probes are evicted clean
 * and the balance falls back.  A wrong guess costs one write-back of an
 * unmodified page; a right one saves a fault and a TLB flush.
 *
 * Sequential read-then-write passes are the read-ahead's business
 * (eng_stream.writes); this is for misses with no stream.
 */
#include "engine/engine.h"

#define RMW_MAX 32              /* the balance saturates at +-RMW_MAX */
#define RMW_ON 8                /* install dirty above this balance */
#define RMW_PROBE_EVERY 8       /* in that mode, one read miss in this many is a probe */

bool rmw_install_dirty(struct eng_region *r)
{
	if (!r->writable || !eng.uffd.can_wp || r->rmw_score <= RMW_ON)
		return false;
	if (++r->rmw_tick % RMW_PROBE_EVERY == 0)
		return false;
	atomic_fetch_add_explicit(&r->c.rmw_installs, 1, memory_order_relaxed);
	return true;
}

void rmw_note(struct eng_page *p, bool written)
{
	struct eng_region *r = p->region;

	if (!p->rmw_probe)
		return;
	p->rmw_probe = 0;
	if (written && r->rmw_score < RMW_MAX)
		r->rmw_score++;
	else if (!written && r->rmw_score > -RMW_MAX)
		r->rmw_score--;
}
