#!/bin/sh
# get_coco.sh — downloads COCO 2017 (train/val images + instances annotations) into data/coco
# (or $1), the layout configs/r50_*.cfg expect:
#   data/coco/annotations/instances_{train,val}2017.json, data/coco/{train,val}2017/*.jpg
# Needs network access, ~20 GB of downloads and ~45 GB of disk while unpacking.
# Already present parts are skipped; downloads resume (curl -C -) after an interruption.
set -eu
DEST=${1:-data/coco}
BASE=http://images.cocodataset.org
mkdir -p "$DEST"
cd "$DEST"
fetch() { # url file
    if command -v curl >/dev/null 2>&1; then curl -fL -C - -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then wget -c -O "$2" "$1"
    else echo "get_coco.sh: need curl or wget" >&2; exit 1; fi
}
if [ ! -f annotations/instances_val2017.json ] || [ ! -f annotations/instances_train2017.json ]; then
    fetch "$BASE/annotations/annotations_trainval2017.zip" annotations_trainval2017.zip
    unzip -o -q annotations_trainval2017.zip 'annotations/instances_*2017.json'
    rm -f annotations_trainval2017.zip
fi
for split in val2017 train2017; do
    if [ -d "$split" ] && [ "$(ls "$split" | head -n 1)" ]; then echo "$DEST/$split: present"; continue; fi
    fetch "$BASE/zips/$split.zip" "$split.zip"
    unzip -q "$split.zip"
    rm -f "$split.zip"
done
echo "COCO 2017 ready in $DEST (train2017: $(ls train2017 | wc -l) images, val2017: $(ls val2017 | wc -l) images)"
