/* threads.h — one thread count for OpenMP and OpenBLAS.
 *
 * minidet links the OpenMP build of OpenBLAS, so BLAS and our own parallel
 * loops share one OpenMP pool. md_threads_init(n) sets both: n > 0 is used as
 * given, n <= 0 means "OMP_NUM_THREADS if set, else all cores". Call it once
 * at start-up (the CLI does, from [run] threads or --threads). */
#ifndef MINIDET_THREADS_H
#define MINIDET_THREADS_H

int md_threads_init(int n);
int md_threads_get(void);
/* Monotonic wall clock in seconds. */
double md_now(void);
/* CPU time of this process in seconds (user + system, all threads). */
double md_cpu_seconds(void);
/* Peak resident set size of this process in MiB (from getrusage). */
double md_peak_rss_mb(void);
/* Current resident set size in MiB (from /proc/self/statm), or -1. */
double md_rss_mb(void);

#endif
