/* checkpoint.c — save / load / rotate training checkpoints (see checkpoint.h). */
#include "minidet/checkpoint.h"
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include "minidet/safetensors.h"

md_status md_checkpoint_save(const char *path, const md_ckpt_tensor *t, int n, const md_sgd *opt, const md_config *cfg,
                             const md_train_state *st, const char *label_map_json) {
    md_st_writer *w = md_st_writer_new();
    if (!w) return md_error_prefix(md_last_status(), "%s", path);
    md_status s = MD_OK;
    char **names = NULL;
    char *cfgtxt = NULL;
    for (int i = 0; i < n && !s; i++) {
        int64_t shape[4];
        for (int d = 0; d < t[i].ndim; d++) shape[d] = t[i].shape[d];
        s = md_st_writer_add(w, t[i].name, MD_DT_F32, t[i].ndim, shape, t[i].data);
    }
    if (!s && opt && opt->steps > 0) {
        names = calloc((size_t)(opt->n ? opt->n : 1), sizeof *names);
        if (!names) s = md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
        for (int i = 0; i < opt->n && !s; i++) {
            size_t l = strlen(opt->params[i].name) + 32;
            names[i] = malloc(l);
            if (!names[i]) { s = md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); break; }
            snprintf(names[i], l, "optimizer.momentum.%s", opt->params[i].name);
            int64_t shape[1] = {(int64_t)opt->params[i].numel};
            s = md_st_writer_add(w, names[i], MD_DT_F32, 1, shape, opt->momentum[i]);
        }
    }
    char v[128];
#define META(k, ...) do { if (!s) { snprintf(v, sizeof v, __VA_ARGS__); s = md_st_writer_meta(w, k, v); } } while (0)
    META("minidet.format", "%s", MD_CKPT_FORMAT);
    META("minidet.format_version", "%d", MD_CKPT_VERSION);
    if (cfg) {
        cfgtxt = md_config_to_text(cfg);
        if (!cfgtxt && !s) s = md_set_error(MD_ERR_NOMEM, "%s: cannot format the configuration", path);
        if (!s) s = md_st_writer_meta(w, "minidet.config", cfgtxt);
        META("minidet.box_loss", "%s", md_box_loss_name(cfg->roi_heads.box_loss));
        META("minidet.rpn_box_loss", "%s", md_box_loss_name(cfg->rpn.box_loss));
    }
    if (label_map_json && !s) s = md_st_writer_meta(w, "minidet.label_map", label_map_json);
    if (st) {
        META("minidet.iteration", "%lld", st->iteration);
        META("minidet.loader_epoch", "%lld", (long long)st->loader_epoch);
        META("minidet.loader_position", "%lld", (long long)st->loader_position);
        META("minidet.rng", "%llu %llu %llu", (unsigned long long)st->rng_seed, (unsigned long long)st->rng_stream,
             (unsigned long long)st->rng_counter);
        META("minidet.train_time_s", "%.17g", st->train_time_s);
        META("minidet.best_ap", "%.17g", st->best_ap);
        META("minidet.best_iter", "%lld", st->best_iter);
        META("minidet.world_size", "%d", st->world_size > 0 ? st->world_size : 1);
    }
    META("minidet.sgd_steps", "%lld", opt ? opt->steps : 0LL);
#undef META
    if (!s) s = md_st_writer_save(w, path);
    md_st_writer_free(w);
    if (names)
        for (int i = 0; i < opt->n; i++) free(names[i]);
    free(names);
    free(cfgtxt);
    return s;
}

static md_status meta_ll(const md_st_file *f, const char *key, long long *out) {
    const char *v = md_st_meta(f, key);
    if (!v) return md_set_error(MD_ERR_FORMAT, "%s: metadata '%s' is missing (not a minidet training checkpoint?)", f->path, key);
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno) return md_set_error(MD_ERR_FORMAT, "%s: metadata '%s' = '%s' is not an integer", f->path, key, v);
    *out = x;
    return MD_OK;
}

static md_status meta_d(const md_st_file *f, const char *key, double *out) {
    const char *v = md_st_meta(f, key);
    if (!v) return md_set_error(MD_ERR_FORMAT, "%s: metadata '%s' is missing", f->path, key);
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end) return md_set_error(MD_ERR_FORMAT, "%s: metadata '%s' = '%s' is not a number", f->path, key, v);
    *out = x;
    return MD_OK;
}

static md_status check_tensor(const md_st_file *f, const char *name, int ndim, const int *shape, size_t numel) {
    const md_st_tensor *x = md_st_find(f, name);
    if (!x) return md_set_error(MD_ERR_SHAPE, "%s: tensor '%s' is missing", f->path, name);
    if (x->dtype != MD_DT_F32) return md_set_error(MD_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected F32", f->path, name, md_dtype_name(x->dtype));
    int ok = x->numel == numel && (ndim < 0 || x->ndim == ndim);
    for (int d = 0; ok && ndim >= 0 && d < ndim; d++) ok = x->shape[d] == shape[d];
    if (!ok) {
        char a[96] = "", b[96] = "";
        size_t o = 0;
        for (int d = 0; d < x->ndim && o < sizeof a; d++) o += (size_t)snprintf(a + o, sizeof a - o, "%s%lld", d ? ", " : "", (long long)x->shape[d]);
        o = 0;
        if (ndim < 0) snprintf(b, sizeof b, "%zu elements", numel);
        for (int d = 0; d < ndim && o < sizeof b; d++) o += (size_t)snprintf(b + o, sizeof b - o, "%s%d", d ? ", " : "", shape[d]);
        return md_set_error(MD_ERR_SHAPE, "%s: tensor '%s': file has shape [%s], model needs [%s]", f->path, name, a, b);
    }
    return MD_OK;
}

md_status md_checkpoint_config_text(const char *path, char **text) {
    *text = NULL;
    md_st_file f;
    md_status s = md_st_load(path, &f);
    if (s) return s;
    const char *c = md_st_meta(&f, "minidet.config");
    if (c && !(*text = strdup(c))) s = md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    md_st_free(&f);
    return s;
}

md_status md_checkpoint_load(const char *path, const md_ckpt_tensor *t, int n, md_sgd *opt, md_train_state *st,
                             char **config_text_out) {
    md_st_file f;
    md_status s = md_st_load(path, &f);
    if (s) return s;
    const char *fmt = md_st_meta(&f, "minidet.format");
    long long ver = 0, sgd_steps = 0;
    if (!fmt || strcmp(fmt, MD_CKPT_FORMAT)) {
        s = md_set_error(MD_ERR_FORMAT, "%s: not a minidet training checkpoint (metadata minidet.format is %s%s%s)", path,
                         fmt ? "'" : "", fmt ? fmt : "missing", fmt ? "'" : "");
        goto done;
    }
    if ((s = meta_ll(&f, "minidet.format_version", &ver))) goto done;
    if (ver != MD_CKPT_VERSION) {
        s = md_set_error(MD_ERR_FORMAT, "%s: checkpoint format version %lld, this build reads version %d", path, ver, MD_CKPT_VERSION);
        goto done;
    }
    if ((s = meta_ll(&f, "minidet.sgd_steps", &sgd_steps))) goto done;
    /* validate everything first */
    for (int i = 0; i < n; i++)
        if ((s = check_tensor(&f, t[i].name, t[i].ndim, t[i].shape, t[i].numel))) goto done;
    char name[256];
    if (opt && sgd_steps > 0)
        for (int i = 0; i < opt->n; i++) {
            snprintf(name, sizeof name, "optimizer.momentum.%s", opt->params[i].name);
            if ((s = check_tensor(&f, name, -1, NULL, opt->params[i].numel))) goto done;
        }
    md_train_state tmp = {0};
    if (st) {
        long long e, p, bi;
        const char *rng = md_st_meta(&f, "minidet.rng");
        unsigned long long a, b, c;
        if ((s = meta_ll(&f, "minidet.iteration", &tmp.iteration)) || (s = meta_ll(&f, "minidet.loader_epoch", &e)) ||
            (s = meta_ll(&f, "minidet.loader_position", &p)) || (s = meta_ll(&f, "minidet.best_iter", &bi)) ||
            (s = meta_d(&f, "minidet.train_time_s", &tmp.train_time_s)) || (s = meta_d(&f, "minidet.best_ap", &tmp.best_ap)))
            goto done;
        if (!rng || sscanf(rng, "%llu %llu %llu", &a, &b, &c) != 3) {
            s = md_set_error(MD_ERR_FORMAT, "%s: metadata 'minidet.rng' is missing or malformed", path);
            goto done;
        }
        tmp.loader_epoch = e;
        tmp.loader_position = p;
        tmp.best_iter = bi;
        tmp.rng_seed = a;
        tmp.rng_stream = b;
        tmp.rng_counter = c;
        long long ws = 1; /* absent in checkpoints written before data-parallel training: one process */
        if (md_st_meta(&f, "minidet.world_size") && (s = meta_ll(&f, "minidet.world_size", &ws))) goto done;
        if (ws < 1 || ws > 1 << 20) {
            s = md_set_error(MD_ERR_FORMAT, "%s: metadata 'minidet.world_size' = %lld is not a rank count", path, ws);
            goto done;
        }
        tmp.world_size = (int)ws;
    }
    char *cfg = NULL;
    if (config_text_out) {
        const char *c = md_st_meta(&f, "minidet.config");
        if (!c) { s = md_set_error(MD_ERR_FORMAT, "%s: metadata 'minidet.config' is missing", path); goto done; }
        cfg = strdup(c);
        if (!cfg) { s = md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); goto done; }
    }
    /* commit */
    for (int i = 0; i < n; i++) memcpy(t[i].data, md_st_find(&f, t[i].name)->data, t[i].numel * sizeof(float));
    if (opt) {
        if (sgd_steps > 0)
            for (int i = 0; i < opt->n; i++) {
                snprintf(name, sizeof name, "optimizer.momentum.%s", opt->params[i].name);
                memcpy(opt->momentum[i], md_st_find(&f, name)->data, opt->params[i].numel * sizeof(float));
            }
        else
            memset(opt->momentum_block, 0, opt->total * sizeof(float));
        opt->steps = sgd_steps;
    }
    if (st) *st = tmp;
    if (config_text_out) *config_text_out = cfg;
done:
    md_st_free(&f);
    return s;
}

void md_checkpoint_path(char *buf, size_t n, const char *run_dir, long long iteration) {
    snprintf(buf, n, "%s/checkpoints/iter_%07lld.safetensors", run_dir, iteration);
}

static md_status copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb");
    if (!in) return md_set_error(MD_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) { fclose(in); return md_set_error(MD_ERR_IO, "%s: cannot create: %s", dst, strerror(errno)); }
    char buf[1 << 16];
    size_t r;
    int bad = 0;
    while ((r = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, r, out) != r) { bad = 1; break; }
    bad |= ferror(in);
    fclose(in);
    if (fflush(out) || fsync(fileno(out))) bad = 1;
    if (fclose(out)) bad = 1;
    if (bad) { unlink(dst); return md_set_error(MD_ERR_IO, "%s: write failed (disk full?)", dst); }
    return MD_OK;
}

md_status md_checkpoint_link_last(const char *run_dir, const char *ckpt) {
    char tmp[2048], last[2048];
    snprintf(tmp, sizeof tmp, "%s/last.safetensors.tmp", run_dir);
    snprintf(last, sizeof last, "%s/last.safetensors", run_dir);
    unlink(tmp);
    if (link(ckpt, tmp) != 0) {
        md_status s = copy_file(ckpt, tmp);
        if (s) return s;
    }
    if (rename(tmp, last) != 0) {
        unlink(tmp);
        return md_set_error(MD_ERR_IO, "%s: rename failed: %s", last, strerror(errno));
    }
    return MD_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

md_status md_checkpoint_prune(const char *run_dir, int keep) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    DIR *d = opendir(dir);
    if (!d) return md_set_error(MD_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    char *names[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        size_t l = strlen(e->d_name);
        /* "<name>.tmp.<pid>" of a writer that died (SIGKILL, power loss) mid-save: delete it, or a
           crash loop fills the disk. Only when that process is gone. */
        const char *tp = strstr(e->d_name, ".safetensors.tmp.");
        if (tp) {
            char *end;
            long pid = strtol(tp + 17, &end, 10);
            if (pid > 0 && !*end && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
                char p[4096];
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                unlink(p);
            }
            continue;
        }
        if (strncmp(e->d_name, "iter_", 5) || l < 17 || strcmp(e->d_name + l - 12, ".safetensors")) continue;
        names[n] = strdup(e->d_name);
        if (!names[n]) break;
        n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str); /* zero-padded: lexical = numeric order */
    md_status s = MD_OK;
    for (int i = 0; i < n; i++) {
        if (i < n - keep) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            if (unlink(p) != 0 && !s) s = md_set_error(MD_ERR_IO, "%s: cannot delete: %s", p, strerror(errno));
        }
        free(names[i]);
    }
    return s;
}
