/* log.c — leveled logging to stderr (see include/minidet/log.h). */
#include "minidet/log.h"
#include "minidet/error.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static md_log_level g_level = MD_LOG_INFO;

void md_log_set_level(md_log_level level) { g_level = level; }
md_log_level md_log_get_level(void) { return g_level; }

void md_log(md_log_level level, const char *fmt, ...) {
    if (level < g_level) return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    const char *tag = level >= MD_LOG_ERROR ? "error: " : level == MD_LOG_WARN ? "warning: " : "";
    fprintf(stderr, "minidet: %s%s\n", tag, buf);
}

void md_die(void) {
    fprintf(stderr, "minidet: %s\n", md_last_error());
    exit(1);
}
