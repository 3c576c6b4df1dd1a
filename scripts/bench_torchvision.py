#!/usr/bin/python3
"""Peer benchmark: torchvision 0.14 fasterrcnn_resnet50_fpn on CPU, same setting as minidet's bench.

Usage: /usr/bin/python3 scripts/bench_torchvision.py [--mode train|infer] [--threads 2]
       [--height 480 --width 640] [--batch 2] [--iters 5] [--warmup 1]
Train mode: one SGD step (forward with targets, backward, optimizer step) on random images
with 3 random boxes each, min_size/max_size set so the images are not resized.
Infer mode: model.eval() forward at --height x --width.
Prints one JSON line: {"peer": "torchvision", "mode", "threads", "s_per_iter_median", "s_per_image",
"cpu_s_per_iter_median" (process CPU time, all threads), "peak_rss_mb", "iters"} so scripts/bench_*.sh can compute ratios from the same run.
Random weights (no download): the timing of a step does not depend on the weight values.
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torchvision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="train", choices=["train", "infer"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    short, long_ = min(a.height, a.width), max(a.height, a.width)
    # Built by hand so that, as with pretrained weights, BN is FrozenBatchNorm2d and only
    # layer2..layer4 train (fasterrcnn_resnet50_fpn(weights=None) would use plain BatchNorm and
    # train every layer).
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops import misc as misc_nn_ops
    body = torchvision.models.resnet50(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(body, 3)
    model = torchvision.models.detection.FasterRCNN(backbone, num_classes=91, min_size=short, max_size=long_)
    imgs = [torch.rand(3, a.height, a.width) for _ in range(a.batch)]
    g = torch.Generator().manual_seed(1)
    targets = []
    for _ in range(a.batch):
        xy = torch.rand(3, 2, generator=g) * torch.tensor([a.width * 0.6, a.height * 0.6])
        wh = 32 + torch.rand(3, 2, generator=g) * torch.tensor([a.width * 0.3, a.height * 0.3])
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, 91, (3,), generator=g)})
    times, cpus = [], []
    if a.mode == "train":
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.001, momentum=0.9, weight_decay=1e-4)
        for i in range(a.warmup + a.iters):
            t0, c0 = time.perf_counter(), time.process_time()
            losses = model(imgs, targets)
            loss = sum(losses.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= a.warmup:
                times.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
    else:
        model.eval()
        with torch.no_grad():
            for i in range(a.warmup + a.iters):
                t0, c0 = time.perf_counter(), time.process_time()
                model(imgs)
                if i >= a.warmup:
                    times.append(time.perf_counter() - t0)
                    cpus.append(time.process_time() - c0)
    med = statistics.median(times)
    print(json.dumps({"peer": "torchvision " + torchvision.__version__, "mode": a.mode, "threads": a.threads,
                      "height": a.height, "width": a.width, "batch": a.batch,
                      "s_per_iter_median": round(med, 4), "s_per_image": round(med / a.batch, 4),
                      "cpu_s_per_iter_median": round(statistics.median(cpus), 4),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "iters": len(times)}))


if __name__ == "__main__":
    main()
