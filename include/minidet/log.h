/* log.h — minimal leveled logging to stderr.
 *
 * md_log(MD_LOG_INFO, "...") prints "minidet: ..." lines; the level threshold
 * is global (set once by the CLI: --quiet / --verbose). md_die() is for the CLI
 * only: it prints "minidet: <last error>" and exits with status 1. */
#ifndef MINIDET_LOG_H
#define MINIDET_LOG_H

typedef enum { MD_LOG_DEBUG = 0, MD_LOG_INFO = 1, MD_LOG_WARN = 2, MD_LOG_ERROR = 3, MD_LOG_SILENT = 4 } md_log_level;

void md_log_set_level(md_log_level level);
md_log_level md_log_get_level(void);
void md_log(md_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "minidet: " + md_last_error() and exits(1). CLI use only. */
void md_die(void) __attribute__((noreturn));

#endif
