#!/usr/bin/python3
"""Section "anchors" of scripts/torch_reference.py (also runnable alone):
    /usr/bin/python3 scripts/ref_anchors.py [--out DIR]

Writes tests/fixtures/anchors.safetensors for tests/test_model.c: the anchors of torchvision 0.14's
AnchorGenerator (one size per FPN level P2..P6, the same aspect ratios on every level) for a padded
64 x 96 image with the feature-map sizes of minidet's ResNet-FPN at that input (16x24, 8x12, 4x6,
2x3, 1x2), for several [rpn] aspect_ratios. Per case <c>:
  <c>.ratios   float32 (R)        the aspect ratios (height / width), as the config gives them
  <c>.sizes    float32 (5)        the anchor size of each level
  <c>.geom     int64 (2 + 2*5)    image H, W, then each level's feature H, W
  <c>.anchors  float32 (A x 4)    AnchorGenerator(...)(ImageList, feature_maps)[0], exact float32
Cases: default (0.5, 1, 2 with the torchvision sizes 32..512), r5 (0.25, 0.5, 1, 2, 4; sizes with
.5 rounding ties), r1 (one ratio), r8 (eight ratios, the maximum).
"""
import argparse
import os
import sys

import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

SECTION = "anchors"
H, W = 64, 96
LEVELS = [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
CASES = [
    ("default", (0.5, 1.0, 2.0), (32, 64, 128, 256, 512)),
    ("r5", (0.25, 0.5, 1.0, 2.0, 4.0), (8, 13, 25, 100.5, 201)),
    ("r1", (1.5,), (8, 16, 32, 64, 128)),
    ("r8", (0.1, 0.3, 0.7, 1.0, 1.3, 3.0, 7.0, 10.0), (6, 12.5, 40, 100, 200)),
]


def generate(out_dir):
    store = {}
    for name, ratios, sizes in CASES:
        gen = AnchorGenerator(tuple((s,) for s in sizes), (ratios,) * len(sizes))
        images = ImageList(torch.zeros(1, 3, H, W), [(H, W)])
        feats = [torch.zeros(1, 4, h, w) for h, w in LEVELS]
        anchors = gen(images, feats)[0]
        assert anchors.dtype == torch.float32
        assert anchors.shape[0] == sum(h * w for h, w in LEVELS) * len(ratios)
        store[name + ".ratios"] = torch.tensor(ratios, dtype=torch.float32).numpy()
        store[name + ".sizes"] = torch.tensor(sizes, dtype=torch.float32).numpy()
        store[name + ".geom"] = torch.tensor([H, W] + [v for hw in LEVELS for v in hw], dtype=torch.int64).numpy()
        store[name + ".anchors"] = anchors.numpy()
    path = os.path.join(out_dir, "anchors.safetensors")
    st_io.save(path, store, metadata={"made_by": "scripts/ref_anchors.py", "cases": ",".join(c[0] for c in CASES)})
    print("wrote", path)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures"))
    generate(ap.parse_args().out)
