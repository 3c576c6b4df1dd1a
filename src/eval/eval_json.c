/* eval_json.c — eval.json, the one writer for the trainer and ./eval --weights (see evaluate.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/evaluate.h"
#include "minidet/fs.h"

/* Mean of the entries > -1 (pycocotools' "no ground truth" marker), -1 when none is. */
static double mean_valid(const double *v, size_t n) {
    double s = 0;
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] > -1) {
            s += v[i];
            c++;
        }
    return c ? s / (double)c : -1;
}

md_status md_eval_json_write(const char *path, const md_cocoeval_result *r, const md_coco_gt *gt, long long iter,
                             const char *loss, double train_time_s, double img_per_sec) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return md_set_error(MD_ERR_NOMEM, "eval.json: out of memory");
    cJSON_AddNumberToObject(j, "iter", (double)iter);
    cJSON_AddStringToObject(j, "loss", loss);
    if (!isnan(train_time_s)) cJSON_AddNumberToObject(j, "train_time_s", train_time_s);
    if (!isnan(img_per_sec)) cJSON_AddNumberToObject(j, "img_per_sec", img_per_sec);
    cJSON *st = cJSON_AddArrayToObject(j, "stats");
    for (int i = 0; i < 12; i++) cJSON_AddItemToArray(st, cJSON_CreateNumber(r->stats[i]));
    cJSON *pc = cJSON_AddObjectToObject(j, "per_category_ap"), *nm = cJSON_AddObjectToObject(j, "category_names");
    char key[32];
    for (int k = 0; k < r->K; k++) {
        snprintf(key, sizeof key, "%lld", (long long)r->cat_ids[k]);
        cJSON_AddNumberToObject(pc, key, r->per_category_ap[k]);
        int ci = md_coco_gt_cat_index(gt, r->cat_ids[k]);
        cJSON_AddStringToObject(nm, key, ci >= 0 ? gt->cat_names[ci] : "");
    }
    /* AP per IoU threshold (area all, maxDets 100) and PR curves at .50 and .75 */
    int m = r->M - 1;
    double *buf = malloc(sizeof(double) * (size_t)r->R * (size_t)(r->K ? r->K : 1));
    if (!buf) {
        cJSON_Delete(j);
        return md_set_error(MD_ERR_NOMEM, "eval.json: out of memory");
    }
    cJSON *api = cJSON_AddArrayToObject(j, "ap_per_iou");
    for (int t = 0; t < r->T; t++) {
        size_t c = 0;
        for (int ri = 0; ri < r->R; ri++)
            for (int k = 0; k < r->K; k++) buf[c++] = r->precision[md_coco_pidx(r, t, ri, k, 0, m)];
        cJSON_AddItemToArray(api, cJSON_CreateNumber(mean_valid(buf, c)));
    }
    cJSON *pr = cJSON_AddObjectToObject(j, "pr");
    static const int ts[2] = {0, 5};
    static const char *tn[2] = {"0.50", "0.75"};
    for (int q = 0; q < 2; q++) {
        cJSON *arr = cJSON_AddArrayToObject(pr, tn[q]);
        for (int ri = 0; ri < r->R; ri++) {
            for (int k = 0; k < r->K; k++) buf[k] = r->precision[md_coco_pidx(r, ts[q], ri, k, 0, m)];
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(mean_valid(buf, (size_t)r->K)));
        }
    }
    free(buf);
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    if (!txt) return md_set_error(MD_ERR_NOMEM, "eval.json: out of memory");
    md_status s = md_write_atomic(path, txt, strlen(txt));
    free(txt);
    return s;
}
