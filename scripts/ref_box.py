#!/usr/bin/python3
"""Section "box" of scripts/torch_reference.py (also runnable alone):
    /usr/bin/python3 scripts/ref_box.py [--out DIR]

Writes tests/fixtures/box.safetensors for tests/test_box.c and tests/test_box_loss.c:
  loss.*   IoU / GIoU / DIoU / CIoU (and CIoU with the IoU>0.5 alpha gate) losses and their
           autograd gradients w.r.t. the predicted box, on random float32 box pairs grouped in
           cases (loss.case): overlapping, disjoint, pred inside target, target inside pred,
           identical up to 1e-3 (and exactly identical), very thin, very large, touching edges;
           computed by torchvision.ops 0.14 in float64 from the exact float32 inputs.
           "IoU loss" is 1 - inter / (union + 1e-7) with torchvision's _loss_inter_union.
  degen.*  zero-area, inverted (x2 < x1) and coincident boxes: torch's values (may be NaN).
  coder.*  BoxCoder encode / decode / autograd of decode for weights (1,1,1,1) and (10,10,5,5).
  iou.*    torchvision.ops.box_iou in float32 (a matrix with duplicates and empty boxes).
  match.*  Matcher on IoU matrices with ties and a gt that overlaps nothing.
  sort.*   torch's (unstable) scores.sort(descending=True) order on heavily tied scores.
  nms.*    torchvision.ops.nms / batched_nms kept indices (duplicates, score ties), and
           DIoU-NMS by a float32/float64 transcription of the semantics in box.h.
  roi.*    the RoI-head box loss end to end (deltas -> decode -> loss, autograd d deltas):
           smooth_l1 with torchvision's own fastrcnn_loss, the IoU kinds decoded around the
           unit proposal (-0.5,-0.5,0.5,0.5) with weights (10,10,5,5) or into image pixels.
Outputs are float64 unless stated; inputs are float32 (the values the C code reads).
"""
import argparse
import math
import os
import sys

import numpy as np
import torch
import torchvision
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss
from torchvision.ops._utils import _loss_inter_union
from torchvision.ops.diou_loss import _diou_iou_loss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

SECTION = "box"
FILE = "box.safetensors"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS = 1e-7
CASES = ["overlap", "disjoint", "pred_inside", "target_inside", "near_identical", "thin", "large", "touching"]


# ------------------------------------------------------------------ losses (torchvision 0.14)
def iou_loss(p, t):
    inter, union = _loss_inter_union(p, t)
    return 1 - inter / (union + EPS)


def ciou_gated(p, t):
    # complete_box_iou_loss with mmdetection's gate: alpha = 0 unless iou > 0.5
    diou, iou = _diou_iou_loss(p, t)
    w, h = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    wg, hg = t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]
    v = (4 / (torch.pi ** 2)) * torch.pow(torch.atan(wg / hg) - torch.atan(w / h), 2)
    with torch.no_grad():
        alpha = (iou > 0.5).to(v.dtype) * v / (1 - iou + v + EPS)
    return diou + alpha * v


LOSSES = {
    "iou": iou_loss,
    "giou": lambda p, t: generalized_box_iou_loss(p, t),
    "diou": lambda p, t: distance_box_iou_loss(p, t),
    "ciou": lambda p, t: complete_box_iou_loss(p, t),
    "ciou_gated": ciou_gated,
}


def loss_and_grad(fn, pred32, tgt32):
    p = torch.from_numpy(pred32).to(torch.float64).requires_grad_()
    t = torch.from_numpy(tgt32).to(torch.float64)
    l = fn(p, t)
    l.sum().backward()
    return l.detach().numpy(), p.grad.numpy()


def make_pairs(rng, n_per_case):
    preds, tgts, cases = [], [], []

    def box(cx, cy, w, h):
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)

    n = n_per_case
    for ci, name in enumerate(CASES):
        cx, cy = rng.uniform(0, 600, n), rng.uniform(0, 600, n)
        w, h = rng.uniform(4, 300, n), rng.uniform(4, 300, n)
        t = box(cx, cy, w, h)
        if name == "overlap":
            p = box(cx + rng.uniform(-0.45, 0.45, n) * w, cy + rng.uniform(-0.45, 0.45, n) * h,
                    w * rng.uniform(0.5, 2.0, n), h * rng.uniform(0.5, 2.0, n))
        elif name == "disjoint":
            side = rng.integers(0, 4, n)
            gap = rng.uniform(0.5, 200, n)
            pw, ph = rng.uniform(4, 300, n), rng.uniform(4, 300, n)
            pcx = np.where(side == 0, t[:, 2] + gap + pw / 2, np.where(side == 1, t[:, 0] - gap - pw / 2,
                                                                          cx + rng.uniform(-100, 100, n)))
            pcy = np.where(side == 2, t[:, 3] + gap + ph / 2, np.where(side == 3, t[:, 1] - gap - ph / 2,
                                                                          cy + rng.uniform(-100, 100, n)))
            p = box(pcx, pcy, pw, ph)
        elif name in ("pred_inside", "target_inside"):
            s = rng.uniform(0.1, 0.9, (n, 2))
            iw, ih = w * s[:, 0], h * s[:, 1]
            icx = t[:, 0] + iw / 2 + rng.uniform(0, 1, n) * (w - iw)
            icy = t[:, 1] + ih / 2 + rng.uniform(0, 1, n) * (h - ih)
            inner = box(icx, icy, iw, ih)
            p, t = (inner, t) if name == "pred_inside" else (t, inner)
        elif name == "near_identical":
            p = t + rng.uniform(-1e-3, 1e-3, (n, 4))
            p[: n // 6] = t[: n // 6]  # exactly identical: every max/min ties (half gradients)
        elif name == "thin":
            thin = rng.uniform(1e-3, 1e-2, n)
            horiz = rng.integers(0, 2, n).astype(bool)
            t = box(cx, cy, np.where(horiz, w, thin), np.where(horiz, thin, h))
            p = box(cx + rng.uniform(-0.3, 0.3, n) * np.where(horiz, w, 1e-2),
                    cy + rng.uniform(-0.3, 0.3, n) * np.where(horiz, 1e-2, h),
                    np.where(horiz, w * rng.uniform(0.5, 1.5, n), rng.uniform(1e-3, 2e-2, n)),
                    np.where(horiz, rng.uniform(1e-3, 2e-2, n), h * rng.uniform(0.5, 1.5, n)))
        elif name == "large":
            sc = 200.0
            t = box(cx * sc, cy * sc, w * sc, h * sc)
            p = box(cx * sc + rng.uniform(-0.5, 0.5, n) * w * sc, cy * sc + rng.uniform(-0.5, 0.5, n) * h * sc,
                    w * sc * rng.uniform(0.3, 3, n), h * sc * rng.uniform(0.3, 3, n))
        elif name == "touching":
            # integer coordinates so edges coincide exactly
            t = np.round(t)
            t[:, 2] = np.maximum(t[:, 2], t[:, 0] + 1)
            t[:, 3] = np.maximum(t[:, 3], t[:, 1] + 1)
            kind = rng.integers(0, 4, n)
            pw, ph = np.round(rng.uniform(2, 200, n)), np.round(rng.uniform(2, 200, n))
            p = np.empty_like(t)
            # 0: touching on the right edge (no overlap), 1: touching at a corner,
            # 2: overlapping with a shared left edge, 3: shared top and bottom edges
            py = t[:, 1] + np.round(rng.uniform(-50, 50, n))
            p[:, 0] = np.where(kind == 0, t[:, 2], np.where(kind == 1, t[:, 2], t[:, 0]))
            p[:, 1] = np.where(kind == 1, t[:, 3], np.where(kind == 3, t[:, 1], py))
            p[:, 2] = p[:, 0] + pw
            p[:, 3] = np.where(kind == 3, t[:, 3], p[:, 1] + ph)
        preds.append(p)
        tgts.append(t)
        cases.append(np.full(n, ci, np.int64))
    return (np.concatenate(preds).astype(np.float32), np.concatenate(tgts).astype(np.float32),
            np.concatenate(cases))


def degenerate_pairs():
    b = [
        ([10, 10, 10, 20], [5, 5, 30, 30]),      # zero-width pred inside target
        ([10, 10, 20, 10], [5, 5, 30, 30]),      # zero-height pred
        ([10, 10, 10, 10], [5, 5, 30, 30]),      # point pred
        ([10, 10, 10, 10], [10, 10, 10, 10]),    # identical points
        ([20, 20, 10, 10], [5, 5, 30, 30]),      # inverted pred
        ([20, 10, 10, 30], [5, 5, 30, 30]),      # inverted x only
        ([5, 5, 30, 30], [12, 12, 12, 40]),      # zero-width target
        ([5, 5, 30, 30], [40, 40, 30, 30]),      # inverted target
        ([0, 0, 0, 0], [0, 0, 1, 1]),            # empty at the corner
        ([1, 1, 2, 2], [1, 1, 2, 2 + 1e-6]),     # near identical, tiny
    ]
    return np.array([x[0] for x in b], np.float32), np.array([x[1] for x in b], np.float32)


# ------------------------------------------------------------------ coder
def coder_refs(store, rng, n, k, weights, tag):
    coder = det_utils.BoxCoder(weights)
    cx, cy = rng.uniform(0, 800, n), rng.uniform(0, 800, n)
    w, h = rng.uniform(2, 400, n), rng.uniform(2, 400, n)
    props = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).astype(np.float32)
    gcx, gcy = cx + rng.normal(0, 0.3, n) * w, cy + rng.normal(0, 0.3, n) * h
    gw, gh = w * np.exp(rng.normal(0, 0.5, n)), h * np.exp(rng.normal(0, 0.5, n))
    gt = np.stack([gcx - gw / 2, gcy - gh / 2, gcx + gw / 2, gcy + gh / 2], -1).astype(np.float32)
    enc = coder.encode_single(torch.from_numpy(gt).double(), torch.from_numpy(props).double())
    enc32 = coder.encode_single(torch.from_numpy(gt), torch.from_numpy(props))  # torchvision's float32 result
    rel = rng.normal(0, 1, (n, 4 * k)) * np.array(weights * k) * 0.5
    # some dw/dh beyond the clamp (clip * ww + margin) so the clamp and its zero gradient are exercised
    big = rng.random((n, 4 * k)) < 0.08
    col = np.tile(np.array([0, 0, 1, 1], bool), k)
    clip = math.log(1000.0 / 16)
    wvec = np.array(weights * k)
    rel = np.where(big & col, (clip + rng.uniform(0.05, 1.0, (n, 4 * k))) * wvec, rel).astype(np.float32)
    r = torch.from_numpy(rel).double().requires_grad_()
    dec = coder.decode_single(r, torch.from_numpy(props).double())
    dout = rng.normal(0, 1, dec.shape).astype(np.float32)
    dec.backward(torch.from_numpy(dout).double())
    store.update({
        f"coder.{tag}.weights": np.array(weights, np.float64),
        f"coder.{tag}.proposals": props, f"coder.{tag}.gt": gt, f"coder.{tag}.encoded": enc.numpy(),
        f"coder.{tag}.encoded32": enc32.numpy(),
        f"coder.{tag}.rel": rel, f"coder.{tag}.decoded": dec.detach().numpy(), f"coder.{tag}.dout": dout,
        f"coder.{tag}.drel": r.grad.numpy(),
    })


# ------------------------------------------------------------------ NMS helpers
def rand_boxes(rng, n, size=400.0):
    cx, cy = rng.uniform(0, size, n), rng.uniform(0, size, n)
    w, h = rng.uniform(5, size / 3, n), rng.uniform(5, size / 3, n)
    b = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    dup = rng.random(n) < 0.15  # exact duplicates of another box
    src = rng.integers(0, n, n)
    b[dup] = b[src[dup]]
    near = rng.random(n) < 0.15  # near duplicates
    b[near] = b[src[near]] + rng.normal(0, 2.0, (near.sum(), 4))
    return b.astype(np.float32)


def rand_scores(rng, n, levels):
    # few distinct values -> many ties
    return (rng.integers(0, levels, n) / float(levels)).astype(np.float32)


def diou_nms_ref(boxes, scores, thresh, beta):
    """Transcription of md_diou_nms's documented semantics: torchvision nms's score order
    (stable descending), float32 IoU, penalty (rho^2/c^2)^beta in float64, suppress where
    iou - penalty >= thresh."""
    order = np.argsort(-scores, kind="stable")
    b = boxes.astype(np.float32)
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    sup = np.zeros(len(b), bool)
    keep = []
    for a, i in enumerate(order):
        if sup[i]:
            continue
        keep.append(i)
        for j in order[a + 1:]:
            if sup[j]:
                continue
            xx1, yy1 = max(b[i, 0], b[j, 0]), max(b[i, 1], b[j, 1])
            xx2, yy2 = min(b[i, 2], b[j, 2]), min(b[i, 3], b[j, 3])
            inter = np.float32(max(np.float32(0), xx2 - xx1)) * np.float32(max(np.float32(0), yy2 - yy1))
            ovr = np.float32(inter / np.float32(areas[i] + areas[j] - inter))
            bi, bj = b[i].astype(np.float64), b[j].astype(np.float64)
            rho2 = ((bi[0] + bi[2]) / 2 - (bj[0] + bj[2]) / 2) ** 2 + ((bi[1] + bi[3]) / 2 - (bj[1] + bj[3]) / 2) ** 2
            cw = max(bi[2], bj[2]) - min(bi[0], bj[0])
            ch = max(bi[3], bj[3]) - min(bi[1], bj[1])
            c2 = cw * cw + ch * ch
            pen = (rho2 / c2) ** beta if c2 > 0 else 0.0
            if float(ovr) - pen >= thresh:
                sup[j] = True
    return np.array(keep, np.int64)


# ------------------------------------------------------------------ RoI-head loss
ROI_WEIGHTS = {"smooth_l1": 1.0, "iou": 10.0, "giou": 10.0, "diou": 12.0, "ciou": 12.0}


def roi_refs(store, rng):
    R, C = 96, 5
    coder = det_utils.BoxCoder((10.0, 10.0, 5.0, 5.0))
    cx, cy = rng.uniform(50, 700, R), rng.uniform(50, 700, R)
    w, h = rng.uniform(8, 300, R), rng.uniform(8, 300, R)
    props = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).astype(np.float32)
    gcx, gcy = cx + rng.normal(0, 0.2, R) * w, cy + rng.normal(0, 0.2, R) * h
    gw, gh = w * np.exp(rng.normal(0, 0.3, R)), h * np.exp(rng.normal(0, 0.3, R))
    gt = np.stack([gcx - gw / 2, gcy - gh / 2, gcx + gw / 2, gcy + gh / 2], -1).astype(np.float32)
    labels = rng.integers(1, C, R)
    labels[rng.random(R) < 0.6] = 0  # background rows
    # predicted deltas: near the targets for half the rows (small smooth-L1 region), random elsewhere
    tgt = coder.encode_single(torch.from_numpy(gt).double(), torch.from_numpy(props).double()).numpy()
    deltas = rng.normal(0, 1.0, (R, C, 4)) * np.array([1.0, 1.0, 0.5, 0.5])
    near = rng.random(R) < 0.5
    deltas[near, :, :] = tgt[near, None, :] + rng.normal(0, 0.05, (near.sum(), C, 4))
    deltas[3, labels[3] if labels[3] > 0 else 1, 2] = 30.0  # beyond the clamp (dw / 5 > log(62.5))
    labels[3] = max(labels[3], 1)
    deltas = deltas.astype(np.float32)
    store.update({"roi.deltas": deltas, "roi.proposals": props, "roi.gt": gt, "roi.labels": labels.astype(np.int64)})

    P = torch.from_numpy(props).double()
    G = torch.from_numpy(gt).double()
    unit = torch.tensor([[-0.5, -0.5, 0.5, 0.5]], dtype=torch.float64).expand(R, 4)
    for kind, wgt in ROI_WEIGHTS.items():
        for space in ("proposal", "image"):
            d = torch.from_numpy(deltas).double().reshape(R, C * 4).requires_grad_()
            lab = torch.from_numpy(labels)
            if kind == "smooth_l1":
                targets = coder.encode_single(G, P)
                logits = torch.zeros(R, C, dtype=torch.float64)
                _, loss = fastrcnn_loss(logits, d, [lab], [targets])
            else:
                pos = torch.where(lab > 0)[0]
                dpos = d.reshape(R, C, 4)[pos, lab[pos]]
                if space == "proposal":
                    targets = coder.encode_single(G, P)
                    pb = coder.decode_single(dpos, unit[pos])
                    tb = coder.decode_single(targets[pos], unit[pos])
                else:
                    pb = coder.decode_single(dpos, P[pos])
                    tb = G[pos]
                fn = LOSSES[kind]
                loss = fn(pb, tb).sum() * wgt / lab.numel()
            loss.backward()
            store[f"roi.{kind}.{space}.loss"] = np.array([loss.item()], np.float64)
            store[f"roi.{kind}.{space}.ddeltas"] = d.grad.reshape(R, C, 4).numpy()


def generate(out_dir):
    rng = np.random.default_rng(20261125)
    store = {}
    # ---- per-box losses
    pred, tgt, case = make_pairs(rng, 300)
    store.update({"loss.pred": pred, "loss.target": tgt, "loss.case": case})
    for name, fn in LOSSES.items():
        v, g = loss_and_grad(fn, pred, tgt)
        store[f"loss.{name}.value"] = v
        store[f"loss.{name}.grad"] = g
    dp, dt = degenerate_pairs()
    store.update({"degen.pred": dp, "degen.target": dt})
    for name, fn in LOSSES.items():
        v, g = loss_and_grad(fn, dp, dt)
        store[f"degen.{name}.value"] = v
        store[f"degen.{name}.grad"] = g
    # ---- coder
    coder_refs(store, rng, 200, 1, (1.0, 1.0, 1.0, 1.0), "w1")
    coder_refs(store, rng, 200, 3, (10.0, 10.0, 5.0, 5.0), "w10")
    # ---- IoU matrix
    a = rand_boxes(rng, 60)
    b = np.concatenate([rand_boxes(rng, 75), a[:5], np.array([[3, 3, 3, 9], [7, 7, 7, 7]], np.float32)])
    store.update({"iou.a": a, "iou.b": b,
                  "iou.ref": torchvision.ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()})
    # ---- matcher: gt x predictions quality, ties from duplicate boxes, one gt overlapping nothing
    gtb = rand_boxes(rng, 12)
    gtb[11] = [5000, 5000, 5100, 5100]
    prb = np.concatenate([rand_boxes(rng, 300), gtb[:6], gtb[:3]])  # duplicates -> equal maxima
    q = torchvision.ops.box_iou(torch.from_numpy(gtb), torch.from_numpy(prb))
    store["match.q"] = q.numpy()
    for tag, (hi, lo, allow) in {"rpn": (0.7, 0.3, True), "roi": (0.5, 0.5, False), "mid": (0.6, 0.2, False),
                                 "lowq": (0.5, 0.4, True)}.items():
        m = det_utils.Matcher(hi, lo, allow)(q.clone())
        store[f"match.{tag}.matches"] = m.numpy().astype(np.int64)
        store[f"match.{tag}.params"] = np.array([hi, lo, float(allow)], np.float64)
    # ---- the unstable sort
    for n, levels in ((5, 2), (17, 3), (40, 4), (100, 3), (257, 5), (1000, 7), (3000, 2), (5000, 50)):
        s = rand_scores(rng, n, levels)
        s[rng.random(n) < 0.02] = np.float32(np.nan) if n in (1000, 5000) else s[0]
        store[f"sort.n{n}.scores"] = s
        store[f"sort.n{n}.order"] = torch.from_numpy(s).sort(descending=True)[1].numpy()
    # ---- NMS
    for n, levels, thr in ((12, 3, 0.5), (100, 4, 0.3), (500, 5, 0.5), (2000, 10, 0.7), (800, 1000000, 0.5)):
        bx, sc = rand_boxes(rng, n), rand_scores(rng, n, levels)
        tag = f"nms.n{n}"
        store[f"{tag}.boxes"], store[f"{tag}.scores"] = bx, sc
        store[f"{tag}.thresh"] = np.array([thr], np.float64)
        store[f"{tag}.keep"] = torchvision.ops.nms(torch.from_numpy(bx), torch.from_numpy(sc), thr).numpy()
        store[f"{tag}.diou_keep"] = diou_nms_ref(bx, sc, thr, 1.0)
        store[f"{tag}.diou_keep_b06"] = diou_nms_ref(bx, sc, thr, 0.6)
        if n >= 100:
            idx = rng.integers(0, 7, n)
            store[f"{tag}.idxs"] = idx.astype(np.int64)
            store[f"{tag}.batched_keep"] = torchvision.ops.batched_nms(
                torch.from_numpy(bx), torch.from_numpy(sc), torch.from_numpy(idx), thr).numpy()
    # ---- RoI-head loss end to end
    roi_refs(store, rng)
    path = os.path.join(out_dir, FILE)
    st_io.save(path, store, metadata={"made_by": "scripts/torch_reference.py box (scripts/ref_box.py)",
                                      "torch": torch.__version__, "torchvision": torchvision.__version__})
    print("  wrote %s (%d tensors, %d bytes)" % (path, len(store), os.path.getsize(path)))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    generate(args.out)
