#!/usr/bin/python3
"""Copies a few real COCO images and their annotations from ../shared/data/coco-mini
into tests/fixtures/coco/ (images/ + instances.json), for tests/test_data.c.
Chosen to cover: small images, a grey-scale JPEG (86), portrait and very wide
images, odd sizes (409x500, 423x640), crowd annotations (643), an image with no
annotations (250). Run from the repository root: /usr/bin/python3 scripts/make_coco_fixture.py"""
import json, os, shutil

SRC = "../shared/data/coco-mini"
OUT = "tests/fixtures/coco"
IDS = [536, 643, 183872, 562, 472, 359, 143, 590, 86, 250]

d = json.load(open(f"{SRC}/annotations/instances_train2017.json"))
os.makedirs(f"{OUT}/images", exist_ok=True)
imgs = [im for im in d["images"] if im["id"] in IDS]
imgs.sort(key=lambda im: IDS.index(im["id"]))
assert len(imgs) == len(IDS)
anns = [a for a in d["annotations"] if a["image_id"] in IDS]
for im in imgs:
    shutil.copy(f"{SRC}/train2017/{im['file_name']}", f"{OUT}/images/{im['file_name']}")
out = {"info": d["info"], "licenses": d["licenses"], "images": imgs, "annotations": anns, "categories": d["categories"]}
with open(f"{OUT}/instances.json", "w") as f:
    json.dump(out, f)
print(len(imgs), "images", len(anns), "annotations")
