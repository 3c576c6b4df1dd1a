/* test_box_link.c — md_iou_loss used the way an outside program uses the library: this file
 * includes nothing of minidet but the public <minidet/box_loss.h> (no test harness), and is
 * linked against build/libminidet.a with only the project's declared libraries (the Makefile's
 * test rule). It checks a closed form: two unit-offset 2x2 squares overlap in a 1x2 strip,
 * IoU = 2/6, GIoU enclosing 3x2 = union, DIoU rho^2 = 1, c^2 = 9 + 4. Exit status 0 = pass. */
#include <math.h>
#include <stdio.h>
#include <minidet/box_loss.h>

int main(void) {
    const float a[4] = {0, 0, 2, 2}, b[4] = {1, 0, 3, 2};
    float g[4];
    const double iou = 2.0 / (6.0 + 1e-7);
    const double want[4] = {1 - iou, 1 - iou + (6.0 - 6.0) / (6.0 + 1e-7), 1 - iou + 1.0 / (13.0 + 1e-7), 1 - iou + 1.0 / (13.0 + 1e-7)};
    const md_iou_kind kinds[4] = {MD_LOSS_IOU, MD_LOSS_GIOU, MD_LOSS_DIOU, MD_LOSS_CIOU};
    int fails = 0;
    for (int k = 0; k < 4; k++) {
        float l = md_iou_loss(kinds[k], a, b, g);
        int ok = fabs(l - want[k]) <= 1e-6 * fabs(want[k]) && isfinite(g[0]) && isfinite(g[3]);
        printf("md_iou_loss kind %d: %.7f (want %.7f) %s\n", k, l, want[k], ok ? "ok" : "FAILED");
        fails += !ok;
    }
    /* d IoU-loss / d x1: moving a's left edge right shrinks the union only: d(1 - I/U)/dx1 = I/U^2 * (-2) */
    md_iou_loss(MD_LOSS_IOU, a, b, g);
    const double U = 6.0 + 1e-7, want_g0 = -(2.0 / (U * U)) * 2.0;
    int ok = fabs(g[0] - want_g0) <= 1e-6 * fabs(want_g0);
    printf("d loss / d x1 = %.7f (want %.7f) %s\n", g[0], want_g0, ok ? "ok" : "FAILED");
    fails += !ok;
    printf("%d checks, %d failed\n", 5, fails);
    return fails != 0;
}
