#!/usr/bin/python3
"""Convert a torchvision checkpoint (.pth) to a minidet safetensors file.

  /usr/bin/python3 scripts/convert_torchvision.py IN.pth OUT.safetensors [--backbone-only]

IN is either a torchvision Faster R-CNN state_dict (e.g. fasterrcnn_resnet50_fpn_coco-258fb6c6.pth) or an
ImageNet ResNet state_dict (resnet50-0676ba61.pth, ...); a dict holding the state_dict under "model" or
"state_dict" (torchvision reference-script checkpoints) works too. Tensor names stay torchvision's
state_dict keys (docs/DESIGN.md, "Files") with these adjustments:
  - ImageNet ResNet keys get the "backbone.body." prefix; the classifier fc.* is dropped;
  - torchvision < 0.13 names are updated the way torchvision's own _load_from_state_dict does
    (rpn.head.conv.weight -> rpn.head.conv.0.0.weight, backbone.fpn.inner_blocks.N.weight -> .N.0.weight,
    same for layer_blocks);
  - num_batches_tracked buffers are dropped (FrozenBatchNorm2d has none).
timm's ResNet-D ImageNet weights (resnet18d/34d/50d/101d: deep stem conv1.0/.3/.6, avg-pool shortcuts
downsample.1/.2) convert the same way; train them with [model] vd = 1.
--backbone-only keeps only backbone.body.* (to start a detector from another detector's ResNet).
Everything else the detector needs (FPN, RPN, heads) is initialised by minidet as torchvision does, and
the loader says what it loaded and what it initialised.
"""
import argparse
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402


def rename(name):
    """torchvision key -> minidet key, or None to drop it."""
    if name.endswith("num_batches_tracked"):
        return None
    if name.startswith("fc."):
        return None
    if name.startswith(("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")):
        return "backbone.body." + name
    m = re.fullmatch(r"rpn\.head\.conv\.(weight|bias)", name)
    if m:
        return f"rpn.head.conv.0.0.{m.group(1)}"
    m = re.fullmatch(r"backbone\.fpn\.(inner_blocks|layer_blocks)\.(\d+)\.(weight|bias)", name)
    if m:
        return f"backbone.fpn.{m.group(1)}.{m.group(2)}.0.{m.group(3)}"
    return name


def describe(tensors):
    layer3 = {int(k.split(".")[3]) for k in tensors if k.startswith("backbone.body.layer3.")}
    bottleneck = any(".conv3." in k for k in tensors)
    n3 = len(layer3)
    depth = {2: 18, 6: 50 if bottleneck else 34, 23: 101}.get(n3, f"unknown ({n3} blocks in layer3)")
    parts = [f"ResNet depth {depth}" if n3 else "no ResNet body"]
    if "backbone.body.conv1.0.weight" in tensors:
        parts.append("ResNet-vd deep stem and avg-pool shortcuts (use model.vd = 1)")
    if "roi_heads.box_predictor.cls_score.weight" in tensors:
        parts.append(f"num_classes {tensors['roi_heads.box_predictor.cls_score.weight'].shape[0]}")
    if "backbone.fpn.inner_blocks.0.0.weight" in tensors:
        parts.append(f"FPN channels {tensors['backbone.fpn.inner_blocks.0.0.weight'].shape[0]}")
    return ", ".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--backbone-only", action="store_true", help="keep only backbone.body.* tensors")
    args = ap.parse_args()
    try:
        sd = torch.load(args.input, map_location="cpu")
    except Exception as e:  # noqa: BLE001
        sys.exit(f"convert_torchvision: {args.input}: cannot read as a torch checkpoint: {e}")
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd:
        sys.exit(f"convert_torchvision: {args.input}: no state_dict found")
    out, dropped = {}, []
    for k, v in sd.items():
        if not torch.is_tensor(v):
            dropped.append(k)
            continue
        nk = rename(k)
        if nk is None or (args.backbone_only and not nk.startswith("backbone.body.")):
            dropped.append(k)
            continue
        if nk in out:
            sys.exit(f"convert_torchvision: {args.input}: two tensors map to {nk}")
        if not v.is_floating_point():
            sys.exit(f"convert_torchvision: {args.input}: {k}: dtype {v.dtype} is not floating point")
        out[nk] = v.detach().to(torch.float32).contiguous().numpy()
    if not out:
        sys.exit(f"convert_torchvision: {args.input}: nothing to convert (no model tensors)")
    st_io.save(args.output, out, {"source": os.path.basename(args.input), "converter": "scripts/convert_torchvision.py",
                                  "backbone_only": str(int(args.backbone_only))})
    print(f"{args.output}: {len(out)} tensors ({describe(out)}); dropped {len(dropped)}"
          + (f" (e.g. {', '.join(dropped[:3])})" if dropped else ""))


if __name__ == "__main__":
    main()
