/* error.c — thread-local last-error message (see include/minidet/error.h). */
#include "minidet/error.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MD_ERRMSG_MAX 1024
static _Thread_local char g_msg[MD_ERRMSG_MAX];
static _Thread_local md_status g_code = MD_OK;

md_status md_set_error(md_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    g_code = code;
    return code;
}

md_status md_error_prefix(md_status code, const char *fmt, ...) {
    char prefix[256], old[MD_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    if (old[0]) snprintf(g_msg, sizeof g_msg, "%.255s: %.760s", prefix, old);
    else snprintf(g_msg, sizeof g_msg, "%.255s: %.64s", prefix, md_status_name(code));
    g_code = code;
    return code;
}

const char *md_last_error(void) { return g_msg[0] ? g_msg : md_status_name(g_code); }
md_status md_last_status(void) { return g_code; }
void md_clear_error(void) { g_msg[0] = 0; g_code = MD_OK; }

const char *md_status_name(md_status code) {
    switch (code) {
    case MD_OK: return "ok";
    case MD_ERR_NOMEM: return "out of memory";
    case MD_ERR_IO: return "i/o error";
    case MD_ERR_FORMAT: return "malformed input";
    case MD_ERR_ARG: return "invalid argument";
    case MD_ERR_SHAPE: return "shape mismatch";
    case MD_ERR_NUMERIC: return "non-finite value";
    case MD_ERR_INTERRUPTED: return "interrupted";
    case MD_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}
