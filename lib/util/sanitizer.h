/*
 * lib/util/sanitizer - annotations for what ThreadSanitizer cannot see.
 *
 * The engine writes a page back straight out of region memory after
 * write-protecting it.  The application's stores to that page happen
 * before the write-back, ordered by the kernel (the WP ioctl flushes the
 * TLB; a later store faults and waits), not by any user-space
 * synchronisation, so TSan would report the read as a race.  These
 * annotations tell it to skip the reads of that one call.
 */
#ifndef UMAPD_SANITIZER_H
#define UMAPD_SANITIZER_H

#if defined(__SANITIZE_THREAD__)
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define SAN_IGNORE_READS_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define SAN_IGNORE_READS_END() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define SAN_IGNORE_READS_BEGIN() ((void)0)
#define SAN_IGNORE_READS_END() ((void)0)
#endif

#endif
