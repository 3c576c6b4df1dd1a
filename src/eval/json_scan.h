/* json_scan.h — a small, strict, allocation-free JSON scanner for the large
 * files of src/eval (COCO instances and results lists), internal API.
 *
 * The caller walks the document itself (objects, lists, keys) and reads only
 * the values it needs; everything else is skipped with json_skip_value(). The
 * grammar is RFC 8259 (no NaN/Infinity, no trailing commas). Numbers are
 * converted correctly rounded (exact fast path for <= 19 significant digits
 * and |exponent| <= 22, strtod otherwise), so they equal Python's json.load.
 * Errors name the file, the byte offset and, inside a list, the element
 * ("entry 5" for a results list, "annotations[5]" for a named list). */
#ifndef MINIDET_JSON_SCAN_H
#define MINIDET_JSON_SCAN_H
#include <stddef.h>
#include <stdint.h>
#include "minidet/error.h"

typedef struct {
    const char *buf, *p, *end;
    const char *path;
    const char *list;  /* name of the list being read, NULL for "entry N" */
    size_t entry;      /* index of the element being read, or (size_t)-1 outside */
} json_scan;

/* buf[len] must be readable and 0 (md_read_file guarantees it): number scans stop on it. */
void json_init(json_scan *j, const char *path, const char *buf, size_t len);
/* "entry 5" / "annotations[5]" / "" (outside any element) into buf. */
const char *json_ctx(const json_scan *j, char *buf, size_t cap);
/* Sets a "malformed JSON at byte N" error at the current position. */
md_status json_error(json_scan *j, const char *what);

static inline void json_ws(json_scan *j) {
    const char *p = j->p; /* one compare for the common case, a byte that is not blank */
    while ((unsigned char)*p <= ' ' && p < j->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    j->p = p;
}
/* After whitespace: is the next byte c? (consumes it if so) */
static inline int json_eat(json_scan *j, char c) {
    json_ws(j);
    if (j->p < j->end && *j->p == c) { j->p++; return 1; }
    return 0;
}
/* After a member of an object (close '}') or an element of a list (close ']'): ',' sets *more to 1,
 * close sets it to 0, anything else is a "malformed JSON" error naming what was expected. */
static inline md_status json_next(json_scan *j, char close, int *more) {
    if (json_eat(j, ',')) { *more = 1; return MD_OK; }
    if (json_eat(j, close)) { *more = 0; return MD_OK; }
    return json_error(j, j->p >= j->end ? "unexpected end of file (truncated?)"
                         : close == '}' ? "expected ',' or '}' in an object"
                                        : "expected ',' or ']' in a list");
}

/* A number at j->p. *is_int: written without fraction/exponent and fits int64 (*iv). */
md_status json_number(json_scan *j, double *out, int64_t *iv, int *is_int);
/* A string at j->p: *s, *n point at the raw bytes between the quotes (escapes not decoded). */
md_status json_string_raw(json_scan *j, const char **s, size_t *n);
/* Decodes a raw string (escapes, \uXXXX with surrogates) into a malloc'ed UTF-8 string. */
char *json_decode_string(const char *s, size_t n);
md_status json_skip_value(json_scan *j, int depth);
/* Object key at j->p (after whitespace) followed by ':'; *k, *kl as json_string_raw. */
md_status json_key(json_scan *j, const char **k, size_t *kl);
/* Typed field values (j->p at the value): an integral number (ids), a finite number. */
md_status json_field_id(json_scan *j, const char *field, int64_t *v);
md_status json_field_finite(json_scan *j, const char *field, double *v);
/* [x, y, w, h]: exactly 4 finite numbers. */
md_status json_field_box(json_scan *j, const char *field, double bb[4]);

#endif
