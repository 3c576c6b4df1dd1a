/* error.h — error codes and the last error message.
 *
 * Every fallible minidet function returns an md_status (MD_OK == 0) and, on
 * failure, records a one-line human message with md_set_error(). The message
 * is thread-local, so worker threads do not clobber each other. Callers that
 * only propagate an error return the code unchanged; the CLI prints
 * "minidet: <file>: <what is wrong>" from md_last_error() and exits non-zero.
 * Messages should name the file, the object and the field involved. */
#ifndef MINIDET_ERROR_H
#define MINIDET_ERROR_H

typedef enum {
    MD_OK = 0,
    MD_ERR_NOMEM,       /* allocation failed                              */
    MD_ERR_IO,          /* open/read/write/rename failed                  */
    MD_ERR_FORMAT,      /* malformed file content (JSON, safetensors, image) */
    MD_ERR_ARG,         /* bad argument / config value / CLI usage        */
    MD_ERR_SHAPE,       /* tensor shape or architecture mismatch          */
    MD_ERR_NUMERIC,     /* NaN/Inf where a finite value is required       */
    MD_ERR_INTERRUPTED, /* stopped by a signal                            */
    MD_ERR_INTERNAL     /* a bug: should never happen                     */
} md_status;

/* Records a printf-style message and returns code (so: return md_set_error(...)). */
md_status md_set_error(md_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with "prefix: " (e.g. a file name) and returns code. */
md_status md_error_prefix(md_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *md_last_error(void);
md_status md_last_status(void);
void md_clear_error(void);
const char *md_status_name(md_status code);

/* Returns x's status from the calling function when it is not MD_OK (the message is already set). */
#define MD_TRY(x) do { md_status md_try_ = (x); if (md_try_ != MD_OK) return md_try_; } while (0)

#endif
