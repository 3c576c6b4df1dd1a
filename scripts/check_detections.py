#!/usr/bin/python3
"""End-to-end check: torchvision's own Faster R-CNN (its transform included) on COCO images vs the results
file that `./eval --weights` wrote for the same weights.

  ./eval --weights W.safetensors --ann GT.json --images DIR --out R.json --max-images N model.label_map=coco_id \
         [model.min_size=.. model.max_size=..] [test.score_thresh=..]
  /usr/bin/python3 scripts/check_detections.py --weights W.safetensors --results R.json --ann GT.json \
         --images DIR --max-images N [--min-size ..] [--max-size ..] [--score-thresh ..] [--depth 50]

W holds torchvision state_dict names (scripts/convert_torchvision.py output, or a minidet checkpoint of a
91-class model). The model is torchvision's fasterrcnn_resnet50_fpn layout (FrozenBatchNorm2d, FPN 256,
TwoMLPHead 1024); labels are COCO category ids (label_map=coco_id). Reports, per image, whether both sides
give the same detections in the same order: same count, labels, max box difference (px) and score difference.
Notes: torchvision decodes JPEGs with libjpeg(-turbo), minidet with stb_image; the two differ by a few grey
levels, so for an exact comparison convert the images to PNG first (both sides then see the same pixels).
Exact ties of saturated objectness scores (sigmoid = 1.0, common with random weights) are ordered by
float noise on either side and may change which proposals survive NMS.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops import FrozenBatchNorm2d
from torchvision.transforms.functional import to_tensor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--ann", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--max-images", type=int, default=5)
    ap.add_argument("--min-size", type=int, default=800)
    ap.add_argument("--max-size", type=int, default=1333)
    ap.add_argument("--score-thresh", type=float, default=0.05)
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--num-classes", type=int, default=91)
    args = ap.parse_args()
    torch.set_num_threads(2)
    body = getattr(resnet, f"resnet{args.depth}")(norm_layer=FrozenBatchNorm2d)
    model = FasterRCNN(_resnet_fpn_extractor(body, 3), args.num_classes, min_size=args.min_size, max_size=args.max_size,
                       box_score_thresh=args.score_thresh)
    w, _ = st_io.load(args.weights)
    sd = {k: torch.from_numpy(v) for k, v in w.items() if not k.startswith(("optimizer.", "train."))}
    model.load_state_dict(sd, strict=True)
    model.eval()
    gt = json.load(open(args.ann))
    images = sorted(gt["images"], key=lambda im: im["id"])
    by_id = {im["id"]: im for im in gt["images"]}
    cats = {c["id"] for c in gt["categories"]}
    res = json.load(open(args.results))
    mine = {}
    for r in res:
        mine.setdefault(r["image_id"], []).append(r)
    # ./eval --weights processes images in the annotation file's order
    order = [im["id"] for im in gt["images"]][: args.max_images]
    worst_box, worst_score, n_same, n_total, n_reordered = 0.0, 0.0, 0, 0, 0
    for iid in order:
        im = by_id[iid]
        img = to_tensor(Image.open(os.path.join(args.images, im["file_name"])).convert("RGB"))
        with torch.no_grad():
            out = model([img])[0]
        # ./eval writes only labels that are categories of the annotation file (the 91-way layout has unused ids)
        keep = np.array([int(c) in cats for c in out["labels"].tolist()], dtype=bool)
        tb = out["boxes"].numpy()[keep]
        ts = out["scores"].numpy()[keep]
        tl = out["labels"].numpy()[keep]
        m = mine.get(iid, [])  # results keep the detector's order (score descending) per image
        mb = np.array([[r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]] for r in m])
        ms = np.array([r["score"] for r in m])
        ml = np.array([r["category_id"] for r in m])
        n_total += 1
        same = len(m) == len(tb) and (len(m) == 0 or (ml == tl).all())
        db = float(np.abs(mb - tb).max()) if same and len(m) else 0.0
        dsc = float(np.abs(ms - ts).max()) if same and len(m) else 0.0
        if same:
            n_same += 1
            worst_box, worst_score = max(worst_box, db), max(worst_score, dsc)
        msg = f"same labels and order, max box diff {db:.2e} px, max score diff {dsc:.2e}" if same else "DIFFERENT"
        if not same and len(m) == len(tb):
            # same detections in another order? (pairs whose scores are within float noise may swap)
            used, gap, ok = set(), 0.0, True
            for i in range(len(tb)):
                cand = [j for j in range(len(m)) if j not in used and ml[j] == tl[i] and np.abs(mb[j] - tb[i]).max() < 1e-2]
                if not cand:
                    ok = False
                    break
                j = min(cand, key=lambda j: abs(ms[j] - ts[i]))
                used.add(j)
                if j != i:
                    gap = max(gap, abs(float(ts[i]) - float(ts[j])))
            if ok:
                n_reordered += 1
                msg = f"same detections, order differs only between scores at most {gap:.1e} apart"
        print(f"image {iid}: torchvision {len(tb)} detections, minidet {len(m)}; {msg}")
    _ = images
    print(f"{n_same}/{n_total} images identical (same count, labels, order), {n_reordered} with the same detections "
          f"in another order; worst box diff {worst_box:.2e} px, worst score diff {worst_score:.2e}")
    sys.exit(0 if n_same + n_reordered == n_total else 1)


if __name__ == "__main__":
    main()
