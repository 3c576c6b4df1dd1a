#!/usr/bin/python3
"""Writes tests/data/coco-sample/: a few real COCO 2017 images and an excerpt of the official
instances annotation files, in COCO's own layout:
    annotations/instances_train2017.json, annotations/instances_val2017.json, train2017/, val2017/
The excerpt keeps the official top-level keys (info, licenses, images, annotations, categories), all
80 categories and all licences, and copies each chosen image's records untouched (segmentation
polygons, crowd RLEs, area, iscrowd, ...); only info.description says it is an excerpt.

Usage (from the repository root): /usr/bin/python3 scripts/make_coco_sample.py COCO_DIR
COCO_DIR has the layout scripts/get_coco.sh writes (annotations/instances_{train,val}2017.json,
{train,val}2017/*.jpg); any COCO 2017 copy holding the images below will do.
Why each image is in the sample: tests/data/coco-sample/README.md."""
import json, os, shutil, sys

OUT = "tests/data/coco-sample"
IDS = {
    "train2017": [536, 643, 183872, 562, 472, 359, 143, 590, 86, 250],
    "val2017": [11813, 117645, 549055, 34417],
}

if len(sys.argv) != 2 or not os.path.isfile(os.path.join(sys.argv[1], "annotations", "instances_val2017.json")):
    sys.exit("usage: make_coco_sample.py COCO_DIR (a COCO 2017 copy: annotations/instances_{train,val}2017.json and "
             "{train,val}2017/; scripts/get_coco.sh downloads one)")
src = sys.argv[1]
for split, ids in IDS.items():
    d = json.load(open(os.path.join(src, "annotations", f"instances_{split}.json")))
    imgs = {im["id"]: im for im in d["images"] if im["id"] in ids}
    missing = [i for i in ids if i not in imgs]
    if missing:
        sys.exit(f"make_coco_sample.py: {src}: {split} lacks image ids {missing}")
    anns = [a for a in d["annotations"] if a["image_id"] in imgs]
    os.makedirs(os.path.join(OUT, split), exist_ok=True)
    os.makedirs(os.path.join(OUT, "annotations"), exist_ok=True)
    for i in ids:
        shutil.copy(os.path.join(src, split, imgs[i]["file_name"]), os.path.join(OUT, split, imgs[i]["file_name"]))
    info = dict(d["info"], description=f"COCO 2017 Dataset ({split} excerpt: {len(ids)} images)")
    out = {"info": info, "licenses": d["licenses"], "images": [imgs[i] for i in ids], "annotations": anns,
           "categories": d["categories"]}
    with open(os.path.join(OUT, "annotations", f"instances_{split}.json"), "w") as f:
        json.dump(out, f)
    print(split, len(ids), "images", len(anns), "annotations")
