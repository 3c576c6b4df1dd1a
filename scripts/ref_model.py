#!/usr/bin/python3
"""Reference dumps for the detector parity tests (tests/test_model.c).

Builds torchvision 0.14 Faster R-CNN models with a reduced configuration (ResNet with a width multiplier,
frozen BN with random statistics, small FPN / box head, seeded random weights), saves the weights with
torchvision state_dict names (tests/fixtures/model_<variant>_weights.safetensors) and the intermediate
tensors of a forward pass on two already-transformed images plus the parameter gradients of a random
linear function of the RPN and box-head outputs (tests/fixtures/model_<variant>_ref.safetensors).

The images are fed to model.backbone / model.rpn / model.roi_heads directly (no GeneralizedRCNNTransform),
so the test is independent of the data pipeline.

  /usr/bin/python3 scripts/ref_model.py [--out-dir tests/fixtures] [--variant r18|r50|r50vd|all]
  /usr/bin/python3 scripts/ref_model.py --vd-bn     (after r50vd: the R50-vd body with trainable BatchNorm)
  /usr/bin/python3 scripts/ref_model.py --full-r50 IMAGE.jpg --out-dir /tmp/x   (800x1333 R50-FPN, not committed;
      compare with build/bin/tool_model_compare /tmp/x/model_full_r50_{weights,ref}.safetensors)
"""
import argparse
import os
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

VARIANTS = {
    # name: depth, width_mult, fpn_channels, representation_size, num_classes, trainable_layers, H, W, sizes, orig
    "r18": dict(depth=18, width_mult=0.0625, fpn=16, rep=16, num_classes=5, trainable=3, H=64, W=96,
                sizes=[(64, 96), (56, 84)], orig=[(128, 192), (100, 150)], pre=500, post=300, seed=1),
    "r50": dict(depth=50, width_mult=0.03125, fpn=16, rep=16, num_classes=4, trainable=5, H=64, W=64,
                sizes=[(64, 64)], orig=[(64, 64)], pre=300, post=200, seed=2),
    # ResNet-vd (deep stem, avg-pool shortcut). 80 x 72 is not a multiple of 32 on purpose: C3 is 10 x 9
    # and C4 5 x 5, so the shortcut pools of layer3 and layer4 average a lone last row / column
    # (ceil_mode, count_include_pad=False).
    "r50vd": dict(depth=50, width_mult=0.047, vd=True, fpn=8, rep=8, num_classes=3, trainable=5, H=80, W=72,
                  sizes=[(80, 72)], orig=[(80, 72)], pre=200, post=100, seed=4),
}
BLOCKS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3]),
          101: (Bottleneck, [3, 4, 23, 3])}


def width(base, mult):
    """Channel count of a ResNet stage under a width multiplier (same rule as md_resnet_out_channels)."""
    return max(1, int(base * mult + 0.5))


class WideResNet(ResNet):
    """torchvision ResNet with every channel count scaled by width_mult (torchvision layout and names).

    vd=True: ResNet-D written here after timm's resnet50d (timm/models/resnet.py, stem_type='deep',
    stem_width=32, avg_down=True; timm is not a dependency), with timm's state_dict names: conv1 is
    Sequential(conv 3->32 s2, BN, ReLU, conv 32->32, BN, ReLU, conv 32->64) (indices 0, 1, 3, 4, 6) then
    bn1; a projection shortcut is Sequential(AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False) or
    Identity at stride 1, conv1x1 stride 1, BN) (indices 0, 1, 2)."""

    def __init__(self, depth, width_mult, norm_layer, vd=False):
        nn.Module.__init__(self)
        block, layers = BLOCKS[depth]
        self._norm_layer = norm_layer
        self.vd = vd
        self.inplanes = width(64, width_mult)
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        if vd:
            sw = width(32, width_mult)
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, sw, 3, stride=2, padding=1, bias=False), norm_layer(sw), nn.ReLU(inplace=True),
                nn.Conv2d(sw, sw, 3, stride=1, padding=1, bias=False), norm_layer(sw), nn.ReLU(inplace=True),
                nn.Conv2d(sw, self.inplanes, 3, stride=1, padding=1, bias=False))
        else:
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width(64, width_mult), layers[0])
        self.layer2 = self._make_layer(block, width(128, width_mult), layers[1], stride=2)
        self.layer3 = self._make_layer(block, width(256, width_mult), layers[2], stride=2)
        self.layer4 = self._make_layer(block, width(512, width_mult), layers[3], stride=2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if not self.vd:
            return ResNet._make_layer(self, block, planes, blocks, stride, dilate)
        out = planes * block.expansion
        down = None
        if stride != 1 or self.inplanes != out:
            pool = (nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride != 1 else nn.Identity())
            down = nn.Sequential(pool, nn.Conv2d(self.inplanes, out, 1, stride=1, bias=False), self._norm_layer(out))
        mods = [block(self.inplanes, planes, stride, down, norm_layer=self._norm_layer)]
        self.inplanes = out
        mods += [block(self.inplanes, planes, norm_layer=self._norm_layer) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def build(v, images):
    """Faster R-CNN with random weights; BN statistics measured on `images` then frozen."""
    torch.manual_seed(v["seed"])
    depth, wm = v["depth"], v["width_mult"]
    # 1. a BatchNorm ResNet: random affine, running stats = statistics of this input (momentum None)
    vd = v.get("vd", False)
    bn_net = WideResNet(depth, wm, lambda c: nn.BatchNorm2d(c, momentum=None), vd)
    last_bn = "bn3" if depth >= 50 else "bn2"
    for mname, m in bn_net.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            # the last BN of each residual branch gets a small scale so activations stay O(1) with depth
            lo, hi = (0.2, 0.5) if mname.endswith(last_bn) else (0.5, 1.5)
            nn.init.uniform_(m.weight, lo, hi)
            nn.init.normal_(m.bias, 0.0, 0.2)
    bn_net.train()
    with torch.no_grad():
        bn_net(images)
    body = WideResNet(depth, wm, FrozenBatchNorm2d, vd)
    sd = {k: val for k, val in bn_net.state_dict().items() if not k.endswith("num_batches_tracked")}
    with torch.no_grad():
        for k in sd:  # perturb the statistics so that they are not exactly the batch ones
            if k.endswith("running_var"):
                sd[k] = sd[k] * (0.8 + 0.4 * torch.rand_like(sd[k]))
    missing, unexpected = body.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("fc.weight") or k.endswith("fc.bias") for k in missing), (missing, unexpected)
    mult = 4 if depth >= 50 else 1
    in_ch = [width(b, wm) * mult for b in (64, 128, 256, 512)]
    backbone = BackboneWithFPN(body, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}, in_ch, v["fpn"],
                               extra_blocks=LastLevelMaxPool())
    # trainable layers, torchvision _resnet_fpn_extractor semantics
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][: v["trainable"]]
    if v["trainable"] == 5:
        layers_to_train.append("bn1")
    for name, p in body.named_parameters():
        if all(not name.startswith(layer) for layer in layers_to_train):
            p.requires_grad_(False)
    C = v["fpn"]
    model = FasterRCNN(backbone, num_classes=None, min_size=v["H"], max_size=v["W"],
                       rpn_pre_nms_top_n_train=v["pre"], rpn_pre_nms_top_n_test=v["pre"],
                       rpn_post_nms_top_n_train=v["post"], rpn_post_nms_top_n_test=v["post"],
                       box_head=TwoMLPHead(C * 49, v["rep"]),
                       box_predictor=FastRCNNPredictor(v["rep"], v["num_classes"]),
                       box_score_thresh=0.0, box_nms_thresh=0.5, box_detections_per_img=100)
    # larger RPN head weights than torchvision's std 0.01 so that scores are well separated
    with torch.no_grad():
        nn.init.normal_(model.rpn.head.conv[0][0].weight, std=0.08)
        nn.init.normal_(model.rpn.head.cls_logits.weight, std=0.3)
        nn.init.normal_(model.rpn.head.cls_logits.bias, std=0.1)
        nn.init.normal_(model.rpn.head.bbox_pred.weight, std=0.02)
        for m in backbone.fpn.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.bias, std=0.05)
    model.eval()
    return model


def make_images(v):
    g = torch.Generator().manual_seed(100 + v["seed"])
    N = len(v["sizes"])
    x = torch.zeros(N, 3, v["H"], v["W"])
    yy = torch.linspace(0, 1, v["H"])[:, None]
    xx = torch.linspace(0, 1, v["W"])[None, :]
    for i, (h, w) in enumerate(v["sizes"]):
        img = torch.randn(3, v["H"], v["W"], generator=g) * 0.5
        img += torch.stack([torch.sin(6 * xx + 3 * yy + c) for c in range(3)]) * 1.5
        x[i, :, :h, :w] = img[:, :h, :w]
    return x


def given_rois(v, proposals):
    """RoIs for the RoI-head / gradient checks: some proposals plus boxes that map to every level."""
    rows = []
    H, W = v["H"], v["W"]
    for i, p in enumerate(proposals):
        for b in p[:6]:
            rows.append([float(i)] + b.tolist())
        rows += [[i, 2.5, 3.0, W * 0.6, H * 0.7],          # P2
                 [i, -20.0, -10.0, 110.0, 100.0],           # ~124 px: P3
                 [i, -60.0, -80.0, 190.0, 170.0],           # ~250 px: P4
                 [i, -200.0, -150.0, 300.0, 320.0],         # ~485 px: P5
                 [i, 10.0, 12.0, 10.5, 12.25]]              # tiny: P2 (clamped)
    return torch.tensor(rows, dtype=torch.float32)


def loss_weights(shape, phase):
    """Weights of the linear test loss: w[i] = (float) sin(0.731 i + phase), computed identically in C."""
    n = 1
    for d in shape:
        n *= d
    i = torch.arange(n, dtype=torch.float64)
    return torch.sin(0.731 * i + phase).to(torch.float32).view(shape)


def dump(v, name, out_dir, images=None):
    if images is None:
        images = make_images(v)
    model = build(v, images)
    if v.get("weights"):  # given weights instead of the random ones
        w, _ = st_io.load(v["weights"])
        model.load_state_dict({k: torch.from_numpy(a) for k, a in w.items()}, strict=True)
    sizes = [tuple(s) for s in v["sizes"]]
    il = ImageList(images, sizes)
    out = OrderedDict()
    out["images"] = images
    out["image_sizes"] = torch.tensor(sizes, dtype=torch.int64)
    out["orig_sizes"] = torch.tensor(v["orig"], dtype=torch.int64)

    # forward with autograd (for the gradient check)
    body = model.backbone.body(images)
    feats = model.backbone.fpn(body)
    for k, t in zip(["C2", "C3", "C4", "C5"], body.values()):
        out[k] = t
    for k, t in zip(["P2", "P3", "P4", "P5", "P6"], feats.values()):
        out[k] = t
    flist = list(feats.values())
    obj, deltas = model.rpn.head(flist)
    anchors = model.rpn.anchor_generator(il, flist)
    num_per_level = [o[0].numel() for o in obj]
    objf, deltaf = concat_box_prediction_layers(obj, deltas)
    N = images.shape[0]
    objf = objf.view(N, -1)
    deltaf = deltaf.view(N, -1, 4)
    out["anchors"] = anchors[0]
    out["objectness"] = objf
    out["rpn_deltas"] = deltaf
    out["num_anchors_per_level"] = torch.tensor(num_per_level, dtype=torch.int64)
    with torch.no_grad():
        props = model.rpn.box_coder.decode(deltaf.reshape(-1, 4).detach(), anchors).view(N, -1, 4)
        boxes, scores = model.rpn.filter_proposals(props, objf.detach(), sizes, num_per_level)
    for i in range(N):
        out[f"proposals_{i}"] = boxes[i]
        out[f"proposal_scores_{i}"] = scores[i]
    # detections on the proposals (eval mode, score_thresh 0), rescaled to the original sizes
    with torch.no_grad():
        dets, _ = model.roi_heads(feats, boxes, sizes)
        dets = model.transform.postprocess(dets, sizes, [tuple(o) for o in v["orig"]])
    for i in range(N):
        out[f"det_boxes_{i}"] = dets[i]["boxes"]
        out[f"det_scores_{i}"] = dets[i]["scores"]
        out[f"det_labels_{i}"] = dets[i]["labels"].to(torch.int64)
    # RoI heads on given RoIs (with autograd)
    rois = given_rois(v, boxes)
    per_img = [rois[rois[:, 0] == i, 1:] for i in range(N)]
    order = torch.cat([torch.nonzero(rois[:, 0] == i)[:, 0] for i in range(N)])
    assert torch.equal(order, torch.arange(len(rois))), "rois must be grouped by image"
    pooled = model.roi_heads.box_roi_pool(feats, per_img, sizes)
    hfeat = model.roi_heads.box_head(pooled)
    cls, box = model.roi_heads.box_predictor(hfeat)
    out["rois"] = rois
    out["roi_pooled"] = pooled
    out["class_logits"] = cls
    out["box_deltas"] = box
    # scalar function of the stage outputs -> parameter gradients
    w_obj = loss_weights(objf.shape, 0)
    w_del = loss_weights(deltaf.shape, 1)
    w_cls = loss_weights(cls.shape, 2)
    w_box = loss_weights(box.shape, 3)
    loss = (objf * w_obj).sum() + (deltaf * w_del).sum() + (cls * w_cls).sum() + (box * w_box).sum()
    loss.backward()
    ngrad = 0
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, pname
            out["grad." + pname] = p.grad
            ngrad += 1
    meta = {"depth": v["depth"], "width_mult": v["width_mult"], "fpn_channels": v["fpn"],
            "representation_size": v["rep"], "num_classes": v["num_classes"],
            "trainable_layers": v["trainable"], "pre_nms_top_n": v["pre"], "post_nms_top_n": v["post"],
            "num_grads": ngrad, "vd": int(v.get("vd", False)), "generator": "scripts/ref_model.py"}
    out = OrderedDict((k, t.detach().contiguous().numpy()) for k, t in out.items())
    weights = OrderedDict((k, t.detach().contiguous().numpy()) for k, t in model.state_dict().items())
    st_io.save(os.path.join(out_dir, f"model_{name}_weights.safetensors"), weights, {"generator": "scripts/ref_model.py"})
    st_io.save(os.path.join(out_dir, f"model_{name}_ref.safetensors"), out, meta)
    print(f"{name}: {len(weights)} weight tensors, {ngrad} grads, proposals {[len(b) for b in boxes]}, "
          f"dets {[len(d['boxes']) for d in dets]}")


def vd_bn(out_dir):
    """ResNet-vd with trainable BatchNorm in train() mode ([model] norm = bn, trainable_layers 5): the r50vd
    fixture's weights and image through the body with nn.BatchNorm2d (momentum 0.1) using batch statistics;
    C2..C5, the gradients of sum_l sum(C_l * loss_weights(C_l, 10 + l)) for the deep stem, every shortcut
    and the last block (BN weight / bias included), and those BNs' running statistics after the forward
    -> model_r50vd_bn_ref.safetensors."""
    v = VARIANTS["r50vd"]
    w, _ = st_io.load(os.path.join(out_dir, "model_r50vd_weights.safetensors"))
    ref, _ = st_io.load(os.path.join(out_dir, "model_r50vd_ref.safetensors"))
    body = WideResNet(v["depth"], v["width_mult"], lambda c: nn.BatchNorm2d(c, momentum=0.1), True)
    pre = "backbone.body."
    missing, unexpected = body.load_state_dict({k[len(pre):]: torch.from_numpy(a) for k, a in w.items()
                                                if k.startswith(pre)}, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    body.train()
    x = torch.from_numpy(ref["images"])
    x = body.maxpool(body.relu(body.bn1(body.conv1(x))))
    out, loss = OrderedDict(), 0
    for l, name in enumerate(["layer1", "layer2", "layer3", "layer4"]):
        x = getattr(body, name)(x)
        out["C%d" % (l + 2)] = x
        loss = loss + (x * loss_weights(x.shape, 10 + l)).sum()
    loss.backward()
    keep = lambda n: n.startswith(("conv1.", "bn1.", "layer4.2.")) or ".downsample." in n
    for n, p in body.named_parameters():
        if keep(n):
            out["grad." + pre + n] = p.grad
    for n, b in body.named_buffers():
        if keep(n) and ("running_mean" in n or "running_var" in n):
            out["after." + pre + n] = b
    out = OrderedDict((k, t.detach().contiguous().numpy()) for k, t in out.items())
    st_io.save(os.path.join(out_dir, "model_r50vd_bn_ref.safetensors"), out,
               {"generator": "scripts/ref_model.py --vd-bn", "loss_phase0": 10})
    print("r50vd_bn: %d tensors, %d bytes" % (len(out), sum(a.nbytes for a in out.values())))


def full_r50(out_dir, image_path, weights=None, min_size=800, max_size=1333):
    """Full-size R50-FPN (torchvision defaults, 91 classes) on one real image transformed by torchvision's
    GeneralizedRCNNTransform (800 / 1333): for the one-off large-scale check (tool_model_compare)."""
    from PIL import Image
    import numpy as np
    from torchvision.models.detection.transform import GeneralizedRCNNTransform
    img = torch.from_numpy(np.asarray(Image.open(image_path).convert("RGB")).copy()).permute(2, 0, 1).float() / 255
    tr = GeneralizedRCNNTransform(min_size, max_size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    tr.eval()
    il, _ = tr([img])
    h, w = il.image_sizes[0]
    v = dict(depth=50, width_mult=1.0, fpn=256, rep=1024, num_classes=91, trainable=3, H=il.tensors.shape[2],
             W=il.tensors.shape[3], sizes=[(h, w)], orig=[tuple(img.shape[1:])], pre=1000, post=1000, seed=3,
             weights=weights)
    VARIANTS["full_r50"] = v
    dump(v, "full_r50", out_dir, images=il.tensors)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default="tests/fixtures")
    ap.add_argument("--variant", default="all")
    ap.add_argument("--full-r50", metavar="IMAGE", help="dump the full-size R50-FPN check for IMAGE into --out-dir")
    ap.add_argument("--vd-bn", action="store_true", help="dump model_r50vd_bn_ref.safetensors (needs the r50vd fixtures)")
    ap.add_argument("--weights", help="with --full-r50: use these weights (torchvision names) instead of random ones")
    ap.add_argument("--min-size", type=int, default=800)
    ap.add_argument("--max-size", type=int, default=1333)
    args = ap.parse_args()
    if args.full_r50:
        torch.set_num_threads(2)
        full_r50(args.out_dir, args.full_r50, args.weights, args.min_size, args.max_size)
        return
    torch.set_num_threads(1)
    if args.vd_bn:
        vd_bn(args.out_dir)
        return
    names = list(VARIANTS) if args.variant == "all" else [args.variant]
    for n in names:
        dump(VARIANTS[n], n, args.out_dir)


if __name__ == "__main__":
    main()
