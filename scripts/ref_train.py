#!/usr/bin/python3
"""Reference dumps for minidet's training tests (run with /usr/bin/python3: torch 1.13).

  sgd   -> tests/fixtures/train_sgd.safetensors: three torch.optim.SGD steps (momentum 0.9,
           weight decay 1e-4 on one param group, none on the other) with given gradients and lrs,
           then clip_grad_norm_ on a fourth gradient set; the learning rates of torchvision's
           reference warm-up + MultiStepLR schedule at a few iterations.
  loss  -> tests/fixtures/train_loss.safetensors: a tiny torchvision Faster R-CNN (ResNet-18 layout at 1/16
           width with FrozenBatchNorm2d, FPN 8, TwoMLPHead 16, 5 classes) with random weights and BN
           statistics, a fixed batch of two 64x96 inputs with ground truth, and sampling made
           deterministic (batch_size_per_image 10**7, positive_fraction 1.0: every labelled anchor and
           proposal is sampled). Dumps the weights (torchvision state_dict names), the inputs, the four
           training losses of model.rpn / model.roi_heads and the gradients of their sum for a few tensors.
  loss_bn -> tests/fixtures/train_loss_bn.safetensors: the same with trainable nn.BatchNorm2d in train() mode
           ([model] norm = bn: batch statistics) and random BN weight / bias / running statistics; the weights
           are dumped BEFORE the step, "after.<bn>.running_mean|var" are the running statistics after it, and
           the gradients include BN weight / bias.
Usage: /usr/bin/python3 scripts/ref_train.py sgd|loss|loss_bn
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sgd():
    g = torch.Generator().manual_seed(7)
    shapes = {"a.weight": (4, 3), "a.bias": (4,), "b.weight": (5,)}
    decay = {"a.weight": 1, "a.bias": 0, "b.weight": 1}
    params = {k: torch.randn(s, generator=g).requires_grad_() for k, s in shapes.items()}
    out = {}
    for k, p in params.items():
        out[f"init.{k}"] = p.detach().numpy().copy()
    opt = torch.optim.SGD([
        {"params": [params[k] for k in params if decay[k]], "weight_decay": 1e-4},
        {"params": [params[k] for k in params if not decay[k]], "weight_decay": 0.0},
    ], lr=0.1, momentum=0.9)
    lrs = [0.02, 0.01, 0.005]
    for step, lr in enumerate(lrs):
        for grp in opt.param_groups:
            grp["lr"] = lr
        for k, p in params.items():
            p.grad = torch.randn(p.shape, generator=g) * (step + 1)
            out[f"grad{step}.{k}"] = p.grad.numpy().copy()
        opt.step()
        for k, p in params.items():
            out[f"after{step}.{k}"] = p.detach().numpy().copy()
    for k, p in params.items():
        out[f"momentum.{k}"] = opt.state[p]["momentum_buffer"].numpy().copy()
    out["lrs"] = np.array(lrs, dtype=np.float32)
    # clipping
    for k, p in params.items():
        p.grad = torch.randn(p.shape, generator=g) * 3
        out[f"clipgrad.{k}"] = p.grad.numpy().copy()
    norm = torch.nn.utils.clip_grad_norm_(list(params.values()), 1.5)
    for k, p in params.items():
        out[f"clipped.{k}"] = p.grad.numpy().copy()
    out["clip_norm"] = np.array([float(norm)], dtype=np.float64)
    # torchvision reference schedule: warmup_lr_scheduler (LambdaLR) then MultiStepLR semantics
    base, wf, wi, steps, gamma = 0.02, 0.001, 100, [300, 400], 0.1
    its = [0, 1, 50, 99, 100, 299, 300, 399, 400, 1000]
    vals = []
    for it in its:
        f = 1.0
        if it < wi:
            a = it / wi
            f = wf * (1 - a) + a
        f *= gamma ** sum(1 for s in steps if it >= s)
        vals.append(base * f)
    out["sched_iters"] = np.array(its, dtype=np.int64)
    out["sched_lr"] = np.array(vals, dtype=np.float64)
    path = os.path.join(ROOT, "tests/fixtures/train_sgd.safetensors")
    st_io.save(path, out, {"source": "scripts/ref_train.py sgd (torch %s)" % torch.__version__})
    print("wrote", path)


def loss(bn=False):
    from torch import nn
    from torchvision.models import resnet
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.image_list import ImageList
    from torchvision.ops import FrozenBatchNorm2d
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    torch.manual_seed(3)
    W, FPN, REP, K = 4, 8, 16, 5

    class TinyResNet(resnet.ResNet):
        def __init__(self, w):
            nn.Module.__init__(self)
            self._norm_layer = nn.BatchNorm2d if bn else FrozenBatchNorm2d
            self.inplanes, self.dilation, self.groups, self.base_width = w, 1, 1, 64
            self.conv1 = nn.Conv2d(3, w, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = self._norm_layer(w)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(resnet.BasicBlock, w, 2)
            self.layer2 = self._make_layer(resnet.BasicBlock, 2 * w, 2, stride=2)
            self.layer3 = self._make_layer(resnet.BasicBlock, 4 * w, 2, stride=2)
            self.layer4 = self._make_layer(resnet.BasicBlock, 8 * w, 2, stride=2)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    body = TinyResNet(W)
    backbone = BackboneWithFPN(body, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
                               [W, 2 * W, 4 * W, 8 * W], FPN, extra_blocks=LastLevelMaxPool())
    model = FasterRCNN(backbone, num_classes=None, box_head=TwoMLPHead(FPN * 49, REP),
                       box_predictor=FastRCNNPredictor(REP, K),
                       rpn_batch_size_per_image=10**7, rpn_positive_fraction=1.0,
                       box_batch_size_per_image=10**7, box_positive_fraction=1.0)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.endswith("running_var") or (name.endswith("weight") and "bn" in name or "downsample.1.weight" in name):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
            elif name.endswith("running_mean") or name.endswith("bias"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
        # livelier heads than torchvision's tiny init, so every loss term is far from trivial
        model.rpn.head.cls_logits.weight.normal_(0, 0.1, generator=g)
        model.rpn.head.bbox_pred.weight.normal_(0, 0.05, generator=g)
        model.roi_heads.box_predictor.cls_score.weight.normal_(0, 0.1, generator=g)
        model.roi_heads.box_predictor.bbox_pred.weight.normal_(0, 0.05, generator=g)
        if bn:  # trainable BN weights are parameters here: random too
            for name, p in model.named_parameters():
                if name.endswith("weight") and p.dim() == 1 and name.startswith("backbone.body."):
                    p.copy_(0.5 + torch.rand(p.shape, generator=g))
    model.train()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    H, Wd = 64, 96
    x = torch.randn(2, 3, H, Wd, generator=g)
    sizes = [(64, 96), (60, 90)]
    x[1, :, 60:, :] = 0
    x[1, :, :, 90:] = 0
    boxes = [torch.tensor([[5., 8., 40., 50.], [30., 10., 90., 40.], [60., 30., 95., 63.]]),
             torch.tensor([[10., 5., 50., 30.], [20., 25., 70., 59.]])]
    labels = [torch.tensor([1, 2, 3]), torch.tensor([4, 1])]
    targets = [{"boxes": b, "labels": l} for b, l in zip(boxes, labels)]
    images = ImageList(x, sizes)
    features = model.backbone(x)
    proposals, rpn_losses = model.rpn(images, features, targets)
    _, roi_losses = model.roi_heads(features, proposals, images.image_sizes, targets)
    losses = {**rpn_losses, **roi_losses}
    total = sum(losses.values())
    total.backward()
    out = {}
    for k, v in before.items():
        if k.endswith("num_batches_tracked"):
            continue
        out[k] = v.numpy().copy()
    bn_after = []
    if bn:
        for k, v in model.state_dict().items():
            if k.endswith("running_mean") or k.endswith("running_var"):
                out["after." + k] = v.detach().numpy().copy()
                bn_after.append(k)
    out["input.images"] = x.numpy()
    out["input.image_sizes"] = np.array(sizes, dtype=np.int64)
    out["input.boxes"] = torch.cat(boxes).numpy()
    out["input.labels"] = torch.cat(labels).numpy().astype(np.int64)
    out["input.counts"] = np.array([len(b) for b in boxes], dtype=np.int64)
    order = ["loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"]
    out["losses"] = np.array([float(losses[k]) for k in order], dtype=np.float64)
    grads = ["backbone.body.conv1.weight", "backbone.body.layer4.1.conv2.weight", "backbone.fpn.inner_blocks.0.0.weight",
             "backbone.fpn.layer_blocks.3.0.bias", "rpn.head.conv.0.0.weight", "rpn.head.cls_logits.weight",
             "rpn.head.bbox_pred.bias", "roi_heads.box_head.fc6.weight", "roi_heads.box_predictor.cls_score.weight",
             "roi_heads.box_predictor.bbox_pred.weight"]
    if bn:
        grads += ["backbone.body.bn1.weight", "backbone.body.bn1.bias", "backbone.body.layer1.0.bn2.weight",
                  "backbone.body.layer2.0.downsample.1.weight", "backbone.body.layer2.0.downsample.1.bias",
                  "backbone.body.layer3.1.bn1.bias", "backbone.body.layer4.1.bn2.weight", "backbone.body.layer4.1.bn2.bias"]
    named = dict(model.named_parameters())
    for k in grads:
        out["grad." + k] = named[k].grad.numpy().copy()
    print({k: float(v) for k, v in losses.items()})
    path = os.path.join(ROOT, "tests/fixtures/train_loss_bn.safetensors" if bn else "tests/fixtures/train_loss.safetensors")
    meta = {"source": "scripts/ref_train.py %s (torch %s)" % ("loss_bn" if bn else "loss", torch.__version__),
            "grads": ",".join(grads), "losses": ",".join(order)}
    if bn:
        meta["bn_after"] = ",".join(bn_after)
    st_io.save(path, out, meta)
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "sgd"
    {"sgd": sgd, "loss": loss, "loss_bn": lambda: loss(bn=True)}[cmd]()
