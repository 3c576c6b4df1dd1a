/* json_scan.c — see json_scan.h. */
#include "json_scan.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void json_init(json_scan *j, const char *path, const char *buf, size_t len) {
    j->buf = buf;
    j->p = buf;
    j->end = buf + len;
    j->path = path;
    j->list = NULL;
    j->entry = (size_t)-1;
}

const char *json_ctx(const json_scan *j, char *buf, size_t cap) {
    if (j->entry == (size_t)-1) snprintf(buf, cap, "%s", "");
    else if (j->list) snprintf(buf, cap, "%s[%zu]", j->list, j->entry);
    else snprintf(buf, cap, "entry %zu", j->entry);
    return buf;
}

md_status json_error(json_scan *j, const char *what) {
    size_t off = (size_t)(j->p - j->buf);
    char c[96];
    json_ctx(j, c, sizeof c);
    if (c[0]) return md_set_error(MD_ERR_FORMAT, "%s: malformed JSON at byte %zu (%s): %s", j->path, off, c, what);
    return md_set_error(MD_ERR_FORMAT, "%s: malformed JSON at byte %zu: %s", j->path, off, what);
}

static const double k_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

md_status json_number(json_scan *j, double *out, int64_t *iv, int *is_int) {
    const char *p = j->p, *start = p, *end = j->end;
    int neg = 0, frac = 0, trunc = 0;
    uint64_t mant = 0;
    int nd = 0, e10 = 0;
    if (p < end && *p == '-') { neg = 1; p++; }
    if (p >= end || *p < '0' || *p > '9') { j->p = p; return json_error(j, "expected a number"); }
    if (*p == '0') {
        p++;
    } else {
        while ((unsigned)(*p - '0') < 10) { /* stops at buf[len] == 0 at the latest */
            if (nd < 19) { mant = mant * 10 + (uint64_t)(*p - '0'); nd++; }
            else { e10++; if (*p != '0') trunc = 1; }
            p++;
        }
    }
    if (p < end && *p == '.') {
        frac = 1;
        p++;
        if (p >= end || *p < '0' || *p > '9') { j->p = p; return json_error(j, "expected a digit after '.'"); }
        while ((unsigned)(*p - '0') < 10) {
            if (mant == 0 && *p == '0') e10--;
            else if (nd < 19) { mant = mant * 10 + (uint64_t)(*p - '0'); nd++; e10--; }
            else if (*p != '0') trunc = 1;
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        frac = 1;
        p++;
        int eneg = 0, ex = 0;
        if (p < end && (*p == '+' || *p == '-')) { eneg = *p == '-'; p++; }
        if (p >= end || *p < '0' || *p > '9') { j->p = p; return json_error(j, "expected a digit in the exponent"); }
        while (p < end && *p >= '0' && *p <= '9') { if (ex < 100000) ex = ex * 10 + (*p - '0'); p++; }
        e10 += eneg ? -ex : ex;
    }
    double d;
    if (!trunc && mant <= (1ULL << 53) && e10 >= -22 && e10 <= 22) {
        /* both operands exact: one correctly rounded operation */
        d = (double)mant;
        d = e10 < 0 ? d / k_pow10[-e10] : d * k_pow10[e10];
        if (neg) d = -d;
    } else {
        char tmp[128];
        size_t n = (size_t)(p - start);
        char *s = n < sizeof tmp ? tmp : malloc(n + 1);
        if (!s) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", j->path);
        memcpy(s, start, n);
        s[n] = 0;
        d = strtod(s, NULL);
        if (s != tmp) free(s);
    }
    *is_int = !frac && !trunc && nd <= 18;
    if (*is_int) *iv = neg ? -(int64_t)mant : (int64_t)mant;
    *out = d;
    j->p = p;
    return MD_OK;
}

static int is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

md_status json_string_raw(json_scan *j, const char **s, size_t *n) {
    const char *p = j->p, *end = j->end;
    if (p >= end || *p != '"') return json_error(j, "expected a string");
    p++;
    const char *start = p;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            if (s) *s = start;
            if (n) *n = (size_t)(p - start);
            j->p = p + 1;
            return MD_OK;
        }
        if (c < 0x20) { j->p = p; return json_error(j, "control character in a string"); }
        if (c == '\\') {
            p++;
            if (p >= end) break;
            if (*p == 'u') {
                for (int k = 1; k <= 4; k++)
                    if (p + k >= end || !is_hex(p[k])) { j->p = p; return json_error(j, "bad \\u escape in a string"); }
                p += 4;
            } else if (!memchr("\"\\/bfnrt", *p, 8)) {
                j->p = p;
                return json_error(j, "bad escape in a string");
            }
        }
        p++;
    }
    j->p = end;
    return json_error(j, "unterminated string");
}

static unsigned hex4(const char *p) {
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

char *json_decode_string(const char *s, size_t n) {
    char *o = malloc(n + 1), *q = o; /* UTF-8 of an escape is never longer than the escape */
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') { *q++ = s[i]; continue; }
        char c = s[++i];
        switch (c) {
        case 'b': *q++ = '\b'; break;
        case 'f': *q++ = '\f'; break;
        case 'n': *q++ = '\n'; break;
        case 'r': *q++ = '\r'; break;
        case 't': *q++ = '\t'; break;
        case 'u': {
            unsigned cp = hex4(s + i + 1);
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < n && s[i + 1] == '\\' && s[i + 2] == 'u') {
                unsigned lo = hex4(s + i + 3);
                if (lo >= 0xDC00 && lo < 0xE000) { cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00); i += 6; }
            }
            if (cp < 0x80) *q++ = (char)cp;
            else if (cp < 0x800) { *q++ = (char)(0xC0 | cp >> 6); *q++ = (char)(0x80 | (cp & 0x3F)); }
            else if (cp < 0x10000) { *q++ = (char)(0xE0 | cp >> 12); *q++ = (char)(0x80 | ((cp >> 6) & 0x3F)); *q++ = (char)(0x80 | (cp & 0x3F)); }
            else { *q++ = (char)(0xF0 | cp >> 18); *q++ = (char)(0x80 | ((cp >> 12) & 0x3F)); *q++ = (char)(0x80 | ((cp >> 6) & 0x3F)); *q++ = (char)(0x80 | (cp & 0x3F)); }
            break;
        }
        default: *q++ = c; /* \" \\ \/ */
        }
    }
    *q = 0;
    return o;
}

/* A number that is only skipped: the grammar is checked, no value is built. */
static md_status skip_number(json_scan *j) {
    const char *p = j->p;
    if (*p == '-') p++;
    if (*p == '0') p++;
    else if ((unsigned)(*p - '1') < 9) while ((unsigned)(*p - '0') < 10) p++;
    else { j->p = p; return json_error(j, "expected a number"); }
    if (*p == '.') {
        p++;
        if ((unsigned)(*p - '0') >= 10) { j->p = p; return json_error(j, "expected a digit after '.'"); }
        while ((unsigned)(*p - '0') < 10) p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if ((unsigned)(*p - '0') >= 10) { j->p = p; return json_error(j, "expected a digit in the exponent"); }
        while ((unsigned)(*p - '0') < 10) p++;
    }
    j->p = p;
    return MD_OK;
}

md_status json_skip_value(json_scan *j, int depth) {
    if (depth > 512) return json_error(j, "nesting too deep");
    json_ws(j);
    if (j->p >= j->end) return json_error(j, "unexpected end of file");
    char c = *j->p;
    md_status st;
    if (c == '"') return json_string_raw(j, NULL, NULL);
    if (c == '-' || (c >= '0' && c <= '9')) return skip_number(j);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        if (json_eat(j, close)) return MD_OK;
        for (int more = 1; more;) {
            if (c == '{' && (st = json_key(j, NULL, NULL)) != MD_OK) return st;
            if ((st = json_skip_value(j, depth + 1)) != MD_OK) return st;
            if ((st = json_next(j, close, &more)) != MD_OK) return st;
        }
        return MD_OK;
    }
    static const char *lits[3] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t n = strlen(lits[k]);
        if ((size_t)(j->end - j->p) >= n && !memcmp(j->p, lits[k], n)) { j->p += n; return MD_OK; }
    }
    return json_error(j, "unexpected character");
}

md_status json_key(json_scan *j, const char **k, size_t *kl) {
    json_ws(j);
    if (j->p >= j->end || *j->p != '"') return json_error(j, j->p >= j->end ? "unexpected end of file (truncated?)" : "expected a string key");
    md_status st = json_string_raw(j, k, kl);
    if (st != MD_OK) return st;
    if (!json_eat(j, ':')) return json_error(j, "expected ':'");
    json_ws(j);
    return MD_OK;
}

static int starts_number(const json_scan *j) { return j->p < j->end && (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')); }

/* The value at j->p does not start a number: skip it and name the field. */
static md_status not_a_number(json_scan *j, const char *field) {
    char c[96];
    const char *at = j->p;
    md_status st = json_skip_value(j, 1);
    if (st != MD_OK) return st;
    return md_set_error(MD_ERR_FORMAT, "%s: %s: field %s: not a number (byte %zu)", j->path, json_ctx(j, c, sizeof c), field, (size_t)(at - j->buf));
}

md_status json_field_id(json_scan *j, const char *field, int64_t *v) {
    double d;
    int is_int;
    char c[96];
    const char *at = j->p;
    if (!starts_number(j)) return not_a_number(j, field);
    md_status st = json_number(j, &d, v, &is_int);
    if (st != MD_OK) return st;
    if (!is_int) {
        if (!(d == floor(d)) || fabs(d) > 9007199254740992.0)
            return md_set_error(MD_ERR_FORMAT, "%s: %s: field %s: not an integer (byte %zu)", j->path, json_ctx(j, c, sizeof c), field, (size_t)(at - j->buf));
        *v = (int64_t)d;
    }
    return MD_OK;
}

md_status json_field_finite(json_scan *j, const char *field, double *v) {
    int64_t iv;
    int is_int;
    char c[96];
    const char *at = j->p;
    if (!starts_number(j)) return not_a_number(j, field);
    md_status st = json_number(j, v, &iv, &is_int);
    if (st != MD_OK) return st;
    if (!isfinite(*v))
        return md_set_error(MD_ERR_FORMAT, "%s: %s: field %s: not a finite number (byte %zu)", j->path, json_ctx(j, c, sizeof c), field, (size_t)(at - j->buf));
    return MD_OK;
}

md_status json_field_box(json_scan *j, const char *field, double bb[4]) {
    char c[96];
    const char *at = j->p;
    md_status st;
    if (j->p >= j->end || *j->p != '[') {
        if ((st = json_skip_value(j, 1)) != MD_OK) return st;
        return md_set_error(MD_ERR_FORMAT, "%s: %s: field %s: not a list [x, y, w, h] (byte %zu)", j->path, json_ctx(j, c, sizeof c), field, (size_t)(at - j->buf));
    }
    j->p++;
    int n = 0;
    for (int more = !json_eat(j, ']'); more;) {
        json_ws(j);
        if (n == 4)
            return md_set_error(MD_ERR_FORMAT, "%s: %s: field %s: more than 4 numbers (byte %zu)", j->path, json_ctx(j, c, sizeof c), field, (size_t)(at - j->buf));
        if ((st = json_field_finite(j, field, &bb[n])) != MD_OK) return st;
        n++;
        if ((st = json_next(j, ']', &more)) != MD_OK) return st;
    }
    if (n != 4)
        return md_set_error(MD_ERR_FORMAT, "%s: %s: field %s: %d numbers, expected 4 [x, y, w, h] (byte %zu)", j->path, json_ctx(j, c, sizeof c), field, n, (size_t)(at - j->buf));
    return MD_OK;
}
