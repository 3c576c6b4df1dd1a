/* compare.c — reading run directories for the loss comparison (see compare.h).
 *
 * md_run_summary_load() parses eval.json, metrics.jsonl and config.cfg of one
 * run (docs/FORMATS.md) with strict type checks; every error names the file,
 * the line (metrics.jsonl) and the field. The report itself (tables, plots,
 * compare.md/json, index.html) is in compare_report.c. */
#include "minidet/compare.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "eval_util.h"
#include "minidet/fs.h"
#include "minidet/config.h"
#include "minidet/log.h"

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static char *path_join(const char *dir, const char *file) {
    size_t a = strlen(dir), b = strlen(file);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (n && p[n - 1] != '/') p[n++] = '/';
    memcpy(p + n, file, b + 1);
    return p;
}

/* Last path component, ignoring trailing slashes ("runs/x/" -> "x"). */
static char *base_name(const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && dir[s - 1] != '/') s--;
    char *d = malloc(n - s + 1);
    if (!d) return NULL;
    memcpy(d, dir + s, n - s);
    d[n - s] = 0;
    return d;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Parses text as JSON; on failure sets an error naming path (and line) with the byte offset. */
static md_status parse_json(const char *path, long line, const char *text, size_t len, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (*out) return MD_OK;
    long off = end && end >= text ? (long)(end - text) : -1;
    if (line > 0) return md_set_error(MD_ERR_FORMAT, "%s:%ld: malformed JSON near byte %ld of the line", path, line, off);
    return md_set_error(MD_ERR_FORMAT, "%s: malformed JSON near byte %ld", path, off);
}

static md_status get_num(const char *path, const cJSON *obj, const char *key, int required, double *v, int *present) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (present) *present = 0;
    if (!it || cJSON_IsNull(it)) {
        if (required) return md_set_error(MD_ERR_FORMAT, "%s: field '%s': missing", path, key);
        return MD_OK;
    }
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return md_set_error(MD_ERR_FORMAT, "%s: field '%s': expected a number", path, key);
    *v = it->valuedouble;
    if (present) *present = 1;
    return MD_OK;
}

/* An array of exactly n numbers. */
static md_status get_vec(const char *path, const cJSON *obj, const char *key, int n, int required, double *v, int *present) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (present) *present = 0;
    if (!it || cJSON_IsNull(it)) {
        if (required) return md_set_error(MD_ERR_FORMAT, "%s: field '%s': missing (expected a list of %d numbers)", path, key, n);
        return MD_OK;
    }
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != n)
        return md_set_error(MD_ERR_FORMAT, "%s: field '%s': expected a list of %d numbers%s", path, key, n,
                            cJSON_IsArray(it) ? " (wrong length)" : "");
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, it) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble))
            return md_set_error(MD_ERR_FORMAT, "%s: field '%s'[%d]: expected a number", path, key, i);
        v[i++] = e->valuedouble;
    }
    if (present) *present = 1;
    return MD_OK;
}

static int parse_cat_id(const char *s, int64_t *id) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return 1;
    *id = v;
    return 0;
}

typedef struct {
    int64_t id;
    double ap;
} cat_ap_t;

static int cmp_cat(const void *a, const void *b) {
    int64_t x = ((const cat_ap_t *)a)->id, y = ((const cat_ap_t *)b)->id;
    return (x > y) - (x < y);
}

static md_status load_categories(const char *path, const cJSON *root, md_run_summary *r) {
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(root, "per_category_ap");
    if (!pc || cJSON_IsNull(pc)) return MD_OK;
    if (!cJSON_IsObject(pc)) return md_set_error(MD_ERR_FORMAT, "%s: field 'per_category_ap': expected an object {\"<category_id>\": ap}", path);
    int n = cJSON_GetArraySize(pc);
    if (n == 0) return MD_OK;
    cat_ap_t *tmp = malloc(sizeof(cat_ap_t) * n);
    if (!tmp) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, pc) {
        if (parse_cat_id(e->string, &tmp[i].id)) {
            md_set_error(MD_ERR_FORMAT, "%s: field 'per_category_ap': key '%s' is not a category id", path, e->string);
            free(tmp);
            return MD_ERR_FORMAT;
        }
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble)) {
            md_set_error(MD_ERR_FORMAT, "%s: field 'per_category_ap'['%s']: expected a number", path, e->string);
            free(tmp);
            return MD_ERR_FORMAT;
        }
        tmp[i++].ap = e->valuedouble;
    }
    qsort(tmp, n, sizeof *tmp, cmp_cat);
    for (i = 1; i < n; i++)
        if (tmp[i].id == tmp[i - 1].id) {
            md_set_error(MD_ERR_FORMAT, "%s: field 'per_category_ap': category %lld appears twice", path, (long long)tmp[i].id);
            free(tmp);
            return MD_ERR_FORMAT;
        }
    r->cat_ids = malloc(sizeof(int64_t) * n);
    r->cat_ap = malloc(sizeof(double) * n);
    r->cat_names = calloc(n, sizeof(char *));
    if (!r->cat_ids || !r->cat_ap || !r->cat_names) { free(tmp); return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); }
    r->n_cat = n;
    for (i = 0; i < n; i++) {
        r->cat_ids[i] = tmp[i].id;
        r->cat_ap[i] = tmp[i].ap;
    }
    free(tmp);
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(root, "category_names");
    if (names && !cJSON_IsNull(names) && !cJSON_IsObject(names))
        return md_set_error(MD_ERR_FORMAT, "%s: field 'category_names': expected an object {\"<category_id>\": \"name\"}", path);
    for (i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)r->cat_ids[i]);
        const cJSON *nm = names ? cJSON_GetObjectItemCaseSensitive(names, key) : NULL;
        if (nm && !cJSON_IsString(nm))
            return md_set_error(MD_ERR_FORMAT, "%s: field 'category_names'['%s']: expected a string", path, key);
        r->cat_names[i] = dup_str(nm ? nm->valuestring : "");
        if (!r->cat_names[i]) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    }
    return MD_OK;
}

static md_status load_eval_json(const char *path, md_run_summary *r) {
    char *text;
    size_t len;
    md_status st = md_read_file(path, &text, &len);
    if (st) return st;
    cJSON *root;
    st = parse_json(path, 0, text, len, &root);
    free(text);
    if (st) return st;
    if (!cJSON_IsObject(root)) { cJSON_Delete(root); return md_set_error(MD_ERR_FORMAT, "%s: the top level is not a JSON object", path); }
    double it = 0;
    if ((st = get_vec(path, root, "stats", 12, 1, r->stats, NULL))) goto done;
    if ((st = get_num(path, root, "iter", 1, &it, NULL))) goto done;
    /* -1: unknown (./eval --weights on a checkpoint without training metadata) */
    if (it < -1 || it != floor(it)) { st = md_set_error(MD_ERR_FORMAT, "%s: field 'iter': expected an iteration count (or -1)", path); goto done; }
    r->iter = (long)it;
    if ((st = get_num(path, root, "train_time_s", 0, &r->train_time_s, NULL))) goto done;
    if ((st = get_num(path, root, "img_per_sec", 0, &r->img_per_sec, NULL))) goto done;
    if ((st = get_vec(path, root, "ap_per_iou", 10, 0, r->ap_per_iou, &r->has_ap_per_iou))) goto done;
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(root, "loss");
    if (loss && !cJSON_IsNull(loss)) {
        if (!cJSON_IsString(loss) || !*loss->valuestring) { st = md_set_error(MD_ERR_FORMAT, "%s: field 'loss': expected a loss name", path); goto done; }
        if (!(r->loss = dup_str(loss->valuestring))) { st = md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); goto done; }
    }
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, "pr");
    if (pr && !cJSON_IsNull(pr)) {
        if (!cJSON_IsObject(pr)) { st = md_set_error(MD_ERR_FORMAT, "%s: field 'pr': expected {\"0.50\": [101], \"0.75\": [101]}", path); goto done; }
        int h50, h75;
        char where[MD_PATH_MAX + 32];
        snprintf(where, sizeof where, "%s: field 'pr'", path);
        if ((st = get_vec(where, pr, "0.50", 101, 1, r->pr50, &h50))) goto done;
        if ((st = get_vec(where, pr, "0.75", 101, 1, r->pr75, &h75))) goto done;
        r->has_pr = h50 && h75;
    }
    st = load_categories(path, root, r);
done:
    cJSON_Delete(root);
    return st;
}

static md_status push2(double **a, double **b, int n, int *cap, double x, double y) {
    if (n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        double *na = realloc(*a, sizeof(double) * nc);
        if (!na) return MD_ERR_NOMEM;
        *a = na;
        double *nb = realloc(*b, sizeof(double) * nc);
        if (!nb) return MD_ERR_NOMEM;
        *b = nb;
        *cap = nc;
    }
    (*a)[n] = x;
    (*b)[n] = y;
    return MD_OK;
}

/* Reads metrics.jsonl. A resumed run appends lines again from its checkpoint's
 * iteration: a line whose iter is not after the previous one of its type drops
 * the earlier lines at or after that iteration (the later log wins). */
static md_status load_metrics(const char *path, md_run_summary *r, double *img_s_mean) {
    char *text;
    size_t len;
    md_status st = md_read_file(path, &text, &len);
    if (st) return st;
    int cap_t = 0, cap_e = 0;
    double ips_sum = 0;
    long ips_n = 0, lineno = 0;
    char *p = text;
    while (p < text + len) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        char *end = nl ? nl : text + len;
        lineno++;
        char *q = p;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q == end) { p = end + 1; continue; }
        cJSON *o;
        if ((st = parse_json(path, lineno, p, (size_t)(end - p), &o))) goto done;
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
        char where[MD_PATH_MAX + 32]; /* "path:line" names the line in every message */
        snprintf(where, sizeof where, "%s:%ld", path, lineno);
        if (!cJSON_IsObject(o) || !cJSON_IsString(type)) {
            cJSON_Delete(o);
            st = md_set_error(MD_ERR_FORMAT, "%s:%ld: field 'type': missing (expected \"train\" or \"eval\")", path, lineno);
            goto done;
        }
        double it = 0;
        if ((st = get_num(where, o, "iter", 1, &it, NULL))) { cJSON_Delete(o); goto done; }
        if (!strcmp(type->valuestring, "train")) {
            double loss = 0, ips = 0;
            int has_ips = 0;
            if ((st = get_num(where, o, "loss_total", 1, &loss, NULL)) || (st = get_num(where, o, "img_per_sec", 0, &ips, &has_ips))) {
                cJSON_Delete(o);
                goto done;
            }
            while (r->n_train > 0 && r->train_iter[r->n_train - 1] >= it) r->n_train--;
            if (push2(&r->train_iter, &r->train_loss, r->n_train, &cap_t, it, loss)) { cJSON_Delete(o); st = md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); goto done; }
            r->n_train++;
            if (has_ips) { ips_sum += ips; ips_n++; }
        } else if (!strcmp(type->valuestring, "eval")) {
            double stats[12];
            if ((st = get_vec(where, o, "stats", 12, 1, stats, NULL))) {
                cJSON_Delete(o);
                goto done;
            }
            while (r->n_eval > 0 && r->eval_iter[r->n_eval - 1] >= it) r->n_eval--;
            if (push2(&r->eval_iter, &r->eval_ap, r->n_eval, &cap_e, it, stats[0])) { cJSON_Delete(o); st = md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); goto done; }
            r->n_eval++;
        } /* other line types are for other readers */
        cJSON_Delete(o);
        p = end + 1;
    }
    *img_s_mean = ips_n ? ips_sum / ips_n : NAN;
done:
    free(text);
    return st;
}

/* The resolved config with run.name and run.seed blanked, and the settings that say how a run is
 * executed rather than what it trains (threads, loader workers and queue, log period, output
 * folder; threads move only float rounding, which seeds cover): equal for the seeds of one experiment. */
static char *config_key(const md_config *c) {
    md_config k = *c;
    memset(k.run.name, 0, sizeof k.run.name);
    memset(k.run.output_dir, 0, sizeof k.run.output_dir);
    k.run.seed = 0;
    k.run.threads = 0;
    k.run.log_every = 0;
    k.data.workers = 0;
    k.data.queue_depth = 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    md_status st = md_config_write(&k, f);
    fclose(f);
    if (st != MD_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

md_status md_run_summary_load(const char *dir, md_run_summary *r) {
    memset(r, 0, sizeof *r);
    r->seed = -1;
    r->train_time_s = NAN;
    r->img_per_sec = NAN;
    struct stat sb;
    if (stat(dir, &sb) != 0) return md_set_error(MD_ERR_IO, "%s: no such run directory: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return md_set_error(MD_ERR_ARG, "%s: not a directory (./eval RUN_DIR expects a run directory)", dir);
    if (!(r->dir = dup_str(dir)) || !(r->name = base_name(dir))) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", dir);
    char *ej = path_join(dir, "eval.json"), *mj = path_join(dir, "metrics.jsonl"), *cf = path_join(dir, "config.cfg");
    md_status st = MD_OK;
    if (!ej || !mj || !cf) { st = md_set_error(MD_ERR_NOMEM, "%s: out of memory", dir); goto done; }
    if (!file_exists(ej)) {
        st = md_set_error(MD_ERR_IO,
                          "run %s: no eval.json and no last.safetensors + config.cfg to evaluate (has ./train run there? it writes "
                          "both, and eval.json when data.val_ann is set)",
                          dir);
        goto done;
    }
    if ((st = load_eval_json(ej, r))) goto done;
    double ips = NAN;
    if (file_exists(mj)) {
        r->has_metrics = 1;
        if ((st = load_metrics(mj, r, &ips))) goto done;
        if (!isfinite(r->img_per_sec)) r->img_per_sec = ips;
    } else {
        md_log(MD_LOG_WARN, "run %s: no metrics.jsonl: no training curves for this run", dir);
    }
    if (file_exists(cf)) {
        md_config c;
        md_config_defaults(&c);
        md_status cs = md_config_load(&c, cf, 0, NULL);
        if (cs != MD_OK) {
            if (!r->loss) { st = md_error_prefix(cs, "run %s", dir); goto done; }
            md_log(MD_LOG_WARN, "run %s: %s (using eval.json's loss)", dir, md_last_error());
            md_clear_error();
        } else {
            r->seed = (long)c.run.seed;
            if (!(r->group_key = config_key(&c)) || (c.data.val_ann[0] && !(r->val_ann = dup_str(c.data.val_ann)))) {
                st = md_set_error(MD_ERR_NOMEM, "%s: out of memory", dir);
                goto done;
            }
            const char *cl = md_box_loss_name(c.roi_heads.box_loss);
            if (!r->loss) {
                if (!(r->loss = dup_str(cl))) { st = md_set_error(MD_ERR_NOMEM, "%s: out of memory", dir); goto done; }
            } else if (strcmp(r->loss, cl)) {
                md_log(MD_LOG_WARN, "run %s: eval.json says loss '%s' but config.cfg says '%s' (using eval.json's)", dir, r->loss, cl);
            }
        }
    }
    if (!r->loss && !(r->loss = dup_str("?"))) st = md_set_error(MD_ERR_NOMEM, "%s: out of memory", dir);
    char *dp = path_join(dir, "detections.json");
    if (dp && file_exists(dp)) r->dets_path = dp;
    else free(dp);
done:
    free(ej);
    free(mj);
    free(cf);
    return st;
}

void md_run_summary_free(md_run_summary *r) {
    if (!r) return;
    free(r->dir);
    free(r->name);
    free(r->loss);
    free(r->group_key);
    free(r->val_ann);
    free(r->dets_path);
    for (int i = 0; i < r->n_cat && r->cat_names; i++) free(r->cat_names[i]);
    free(r->cat_names);
    free(r->cat_ids);
    free(r->cat_ap);
    free(r->train_iter);
    free(r->train_loss);
    free(r->eval_iter);
    free(r->eval_ap);
    memset(r, 0, sizeof *r);
}
