#!/usr/bin/python3
"""Writes the PyTorch reference fixtures that tests/test_ops*.c compare against.

Usage: /usr/bin/python3 scripts/torch_reference.py [SECTION ...] [--out DIR]

Each section lives in its own module scripts/ref_<section>.py exposing
    SECTION = "<name>"          (defaults to the module name without "ref_")
    def generate(out_dir): ...  (writes tests/fixtures/<something>.safetensors)
so adding a section means adding a file; this dispatcher finds them all.
With no SECTION every section runs; a SECTION argument also selects every
section whose name starts with it (e.g. "ops" runs ops_dense and ops_heads).
Needs Debian's python3-torch / python3-torchvision (make deps-dev).
"""
import argparse
import glob
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def discover():
    sys.path.insert(0, HERE)
    sections = {}
    for path in sorted(glob.glob(os.path.join(HERE, "ref_*.py"))):
        mod = importlib.import_module(os.path.splitext(os.path.basename(path))[0])
        if not callable(getattr(mod, "generate", None)):
            continue  # a stand-alone reference script (e.g. ref_train.py), not a section
        name = getattr(mod, "SECTION", mod.__name__[len("ref_"):])
        sections[name] = mod
    return sections


def main():
    sections = discover()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sections", nargs="*", help="sections to write (known: %s)" % ", ".join(sections))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"), help="output directory")
    args = ap.parse_args()
    chosen = []
    for want in args.sections or list(sections):
        hits = [n for n in sections if n == want or n.startswith(want)]
        if not hits:
            ap.error("unknown section %r (known: %s)" % (want, ", ".join(sections)))
        chosen += [h for h in hits if h not in chosen]
    os.makedirs(args.out, exist_ok=True)
    for name in chosen:
        print("torch_reference: section %s" % name)
        sections[name].generate(args.out)


if __name__ == "__main__":
    main()
