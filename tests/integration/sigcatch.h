/*
 * sigcatch.h - touch region memory and survive a SIGBUS or SIGSEGV, so a
 * test can tell "the access failed like a failing mmap'd file" apart from
 * "it read zeros" or "it hung" (the watchdog catches the last).
 *
 *   sc_install()                       once per process: the handler
 *   sc_read(p, &byte)  sc_write(p, v)  0, or the signal number the access raised
 *   sc_last_addr(), sc_last_tid()      where and in which thread the last signal hit
 *
 * The jump buffer is per thread: a signal raised by a fault is delivered to
 * the faulting thread, which is what the tests check with sc_last_tid().
 * A signal that arrives while no access is armed is re-raised with the
 * default action, so an unexpected SIGSEGV still kills the test loudly.
 */
#ifndef SIGCATCH_H
#define SIGCATCH_H

#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static _Thread_local sigjmp_buf sc_jb;
static _Thread_local volatile sig_atomic_t sc_armed;
static _Atomic(uintptr_t) sc_addr;
static _Atomic long sc_tid;
static _Atomic int sc_count;

static void sc_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (!sc_armed) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	atomic_store(&sc_addr, (uintptr_t)si->si_addr);
	atomic_store(&sc_tid, (long)syscall(SYS_gettid));
	atomic_fetch_add(&sc_count, 1);
	sc_armed = 0;
	siglongjmp(sc_jb, sig);
}

static inline void sc_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sc_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
}

/* Read one byte; 0 and *out, or the signal number. */
static inline int sc_read(const volatile uint8_t *p, uint8_t *out)
{
	int sig = sigsetjmp(sc_jb, 1);

	if (sig != 0)
		return sig;
	sc_armed = 1;
	*out = *p;
	sc_armed = 0;
	return 0;
}

/* Write one byte; 0, or the signal number. */
static inline int sc_write(volatile uint8_t *p, uint8_t v)
{
	int sig = sigsetjmp(sc_jb, 1);

	if (sig != 0)
		return sig;
	sc_armed = 1;
	*p = v;
	sc_armed = 0;
	return 0;
}

static inline uintptr_t sc_last_addr(void)
{
	return atomic_load(&sc_addr);
}

static inline long sc_last_tid(void)
{
	return atomic_load(&sc_tid);
}

static inline int sc_signals(void)
{
	return atomic_load(&sc_count);
}

#endif /* SIGCATCH_H */
