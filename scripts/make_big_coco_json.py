#!/usr/bin/env python3
"""Writes a synthetic COCO-train-sized instances JSON (118287 images, ~860k
annotations with segmentation polygons, ~450 MB) to measure the loader's peak
RSS: python3 scripts/make_big_coco_json.py /tmp/big_coco.json
Do not commit the output. Deterministic (random.seed(0))."""
import random, sys

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/big_coco.json"
random.seed(0)
N_IMG, N_ANN = 118287, 860001
cats = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
with open(out, "w") as f:
    f.write('{"info": {"description": "synthetic COCO-train-sized file"}, "licenses": [], "images": [')
    for i in range(N_IMG):
        f.write('%s{"license": 3, "file_name": "%012d.jpg", "coco_url": "http://images.cocodataset.org/train2017/%012d.jpg", '
                '"height": 480, "width": 640, "date_captured": "2013-11-14 11:18:45", "id": %d}' % ("," if i else "", i + 1, i + 1, i + 1))
    f.write('], "annotations": [')
    for a in range(N_ANN):
        x, y = random.uniform(0, 500), random.uniform(0, 380)
        w, h = random.uniform(1, 140), random.uniform(1, 100)
        npts = random.randint(10, 36)
        poly = ", ".join("%.2f" % random.uniform(0, 640) for _ in range(2 * npts))
        f.write('%s{"segmentation": [[%s]], "area": %.4f, "iscrowd": 0, "image_id": %d, "bbox": [%.2f, %.2f, %.2f, %.2f], '
                '"category_id": %d, "id": %d}' % ("," if a else "", poly, w * h * 0.6, random.randint(1, N_IMG), x, y, w, h,
                                                   random.choice(cats), a + 1))
    f.write('], "categories": [')
    f.write(", ".join('{"supercategory": "thing", "id": %d, "name": "class%d"}' % (c, c) for c in cats))
    f.write("]}\n")
