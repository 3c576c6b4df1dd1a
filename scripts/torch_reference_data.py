#!/usr/bin/python3
"""Reference dump of torchvision 0.14's GeneralizedRCNNTransform for tests/test_data.c.

Crops three COCO sample images (tests/data/coco-sample/train2017) to small PNGs (lossless,
so the C test decodes exactly the pixels torchvision saw; one is grey-scale to
exercise grey -> RGB), runs GeneralizedRCNNTransform(min_size=64, max_size=96)
on them plus a horizontally flipped copy of the first (flip as torchvision's
references/detection RandomHorizontalFlip: image.flip(-1), x1' = W - x2), and
writes tests/fixtures/data_transform_ref.safetensors:
  batch (4, 3, Hpad, Wpad) float32, image_sizes (4, 2) int64,
  boxes_in_k / boxes_out_k (n_k, 4) float32,
  sizes (N, 6) int64: H, W, min_size, max_size -> out H, out W from torchvision's
  own _resize_image_and_masks, over random and COCO image sizes (those of the COCO sample, plus
  every image of COCO_DIR when given; the committed file holds the sizes of a 287-image COCO 2017
  excerpt instead, written before the sample was in the repository).
Run from the repository root: /usr/bin/python3 scripts/torch_reference_data.py [COCO_DIR]
(COCO_DIR: the layout scripts/get_coco.sh writes)"""
import glob, os, random, sys
import numpy as np
import torch
from PIL import Image
from torchvision.models.detection.transform import GeneralizedRCNNTransform, _resize_image_and_masks
import torchvision.transforms.functional as TF

sys.path.insert(0, os.path.dirname(__file__))
import st_io

FIX = "tests/fixtures"
SAMPLE = "tests/data/coco-sample"
CROPS = [  # source, (left, top, width, height), output png
    ("train2017/000000000536.jpg", (100, 50, 97, 73), "data_crop_a.png"),
    ("train2017/000000000086.jpg", (200, 300, 88, 61), "data_crop_b_grey.png"),
    ("train2017/000000000590.jpg", (30, 200, 150, 41), "data_crop_c.png"),
]
BOXES = [
    [[0.0, 0.0, 97.0, 73.0], [10.5, 3.25, 40.75, 60.0], [60.2, 30.1, 90.9, 50.5]],
    [[5.0, 7.5, 80.0, 30.25], [0.5, 0.5, 87.5, 60.5]],
    [[1.0, 2.0, 149.0, 40.0], [20.3, 10.7, 75.1, 33.3], [100.0, 0.0, 150.0, 41.0], [3.0, 4.0, 8.0, 9.5]],
]

imgs, targets = [], []
for (src, (l, t, w, h), out), boxes in zip(CROPS, BOXES):
    im = Image.open(os.path.join(SAMPLE, src))
    crop = im.crop((l, t, l + w, t + h))
    crop.save(os.path.join(FIX, out))
    x = TF.to_tensor(Image.open(os.path.join(FIX, out)).convert("RGB"))
    imgs.append(x)
    targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.ones(len(boxes), dtype=torch.int64)})
# flipped copy of the first
x0 = imgs[0].flip(-1)
b0 = targets[0]["boxes"].clone()
b0[:, [0, 2]] = x0.shape[-1] - targets[0]["boxes"][:, [2, 0]]
imgs.append(x0)
targets.append({"boxes": b0, "labels": targets[0]["labels"]})

tf = GeneralizedRCNNTransform(64, 96, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).eval()
boxes_in = [t["boxes"].clone() for t in targets]
il, tout = tf(imgs, targets)
out = {"batch": il.tensors.numpy().astype(np.float32), "image_sizes": np.array(il.image_sizes, dtype=np.int64)}
for k in range(len(imgs)):
    out[f"boxes_in_{k}"] = boxes_in[k].numpy()
    out[f"boxes_out_{k}"] = tout[k]["boxes"].numpy()

# output-size rule over many sizes
random.seed(0)
rows = []
cases = [(random.randint(1, 1400), random.randint(1, 1400), mn, mx)
         for mn, mx in [(800, 1333), (600, 1000), (64, 100), (160, 256), (512, 853)] for _ in range(60)]
import json
for root in [SAMPLE] + sys.argv[1:2]:
    for split in ("train2017", "val2017"):
        d = json.load(open(f"{root}/annotations/instances_{split}.json"))
        cases += [(im["height"], im["width"], 800, 1333) for im in d["images"]]
cases += [(73, 97, 64, 96), (61, 88, 64, 96), (41, 150, 64, 96), (480, 640, 800, 1333), (427, 640, 800, 1333)]
for (h, w, mn, mx) in cases:
    y, _ = _resize_image_and_masks(torch.zeros(1, h, w), float(mn), float(mx))
    rows.append([h, w, mn, mx, y.shape[-2], y.shape[-1]])
out["sizes"] = np.array(rows, dtype=np.int64)

# tiny odd-format images and what PIL's convert("RGB") makes of them
rng = np.random.RandomState(0)
la = Image.fromarray(rng.randint(0, 256, (4, 5, 2), dtype=np.uint8), "LA")
rgba = Image.fromarray(rng.randint(0, 256, (3, 6, 4), dtype=np.uint8), "RGBA")
cmyk = Image.fromarray(rng.randint(0, 256, (8, 8, 4), dtype=np.uint8), "CMYK")
la.save(os.path.join(FIX, "img_grey_alpha.png"))
rgba.save(os.path.join(FIX, "img_rgba.png"))
cmyk.save(os.path.join(FIX, "img_cmyk.jpg"), quality=95)
Image.fromarray((rng.randint(0, 65536, (4, 4))).astype(np.uint16)).save(os.path.join(FIX, "img_16bit.png"))
assert Image.open(os.path.join(FIX, "img_16bit.png")).mode.startswith("I")
for name in ("img_grey_alpha.png", "img_rgba.png", "img_cmyk.jpg"):
    out["rgb_" + name.split(".")[0]] = np.asarray(Image.open(os.path.join(FIX, name)).convert("RGB"), dtype=np.uint8)
st_io.save(os.path.join(FIX, "data_transform_ref.safetensors"), out,
           metadata={"source": "torchvision 0.14 GeneralizedRCNNTransform(64, 96), scripts/torch_reference_data.py"})
print("batch", out["batch"].shape, "sizes", out["image_sizes"].tolist(), "size rows", len(rows))
