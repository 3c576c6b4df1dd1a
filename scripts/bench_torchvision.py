#!/usr/bin/python3
"""Peer benchmark: torchvision 0.14 fasterrcnn_resnet50_fpn on CPU, in its standard training loop.

Usage: /usr/bin/python3 scripts/bench_torchvision.py [--mode train|infer] [--threads 2] [--min-size 480 --max-size 640]
       [--plan PLAN --images DIR] [--weights INIT.pth] [--warmup 3] [--iters 5] [--workers 2]
       /usr/bin/python3 scripts/bench_torchvision.py --save-init INIT.pth      (random initial weights, then exit)
       /usr/bin/python3 scripts/bench_torchvision.py --info                    (versions and backends, then exit)

Train mode with --plan: the training loop of torchvision's detection reference (references/detection/train.py,
engine.train_one_epoch) on real images: a torch DataLoader (--workers processes) decodes the JPEGs with PIL and turns
them into float tensors (PILToTensor + ConvertImageDtype) with the plan's horizontal flips; the model's
GeneralizedRCNNTransform normalises, resizes (min_size / max_size) and pads to 32; then model(images, targets),
sum of the losses, backward, SGD (momentum 0.9, weight decay 1e-4) with the reference's linear warm-up. PLAN is
`build/bin/tool_data_bench ANN IMAGE_DIR --plan N` (the batches ./train draws: same images, flips, targets).
Without --plan: the old synthetic setting (random images of --height x --width, 3 random boxes each, no loader).
Infer mode: model.eval() forward at --height x --width.
A step's wall time runs from the end of the previous step to the end of this one (loader wait included, as
./train's sec_per_iter); its CPU time is this process's plus the loader workers' (./train's loader threads are
in its process). Prints one JSON line (medians over the --iters steps after --warmup, and every step's figures).
Random weights (no download): the time of a step does not depend on the weight values; --weights loads a state
dict written by --save-init (so that both programs start from the same weights: scripts/convert_torchvision.py).
"""
import argparse
import ctypes
import json
import os
import resource
import statistics
import time

import torch
import torchvision


def openblas_info():
    """Config and kernel of the OpenBLAS this process loaded (torch's BLAS on Debian), or None."""
    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if "openblas" in path and path.endswith(".so") or "libopenblas" in path:
            lib = ctypes.CDLL(path)
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_config().decode(), lib.openblas_get_corename().decode()
    return None


def info(threads):
    ob = openblas_info()
    cap = [l.strip() for l in torch.__config__.show().splitlines() if "CPU capability" in l or "MKL-DNN" in l]
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "threads": threads,
            "interop_threads": torch.get_num_interop_threads(),
            "mkldnn_enabled": torch.backends.mkldnn.enabled and torch.backends.mkldnn.is_available(),
            "backends": "; ".join(cap), "openblas": ob[0] if ob else None, "openblas_kernel": ob[1] if ob else None,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", ""),
            "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "") or "(unset: the CPU's widest)"}


def build_model(num_classes, min_size, max_size):
    # Built by hand so that, as with pretrained weights, BN is FrozenBatchNorm2d and only
    # layer2..layer4 train (fasterrcnn_resnet50_fpn(weights=None) would use plain BatchNorm and
    # train every layer).
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops import misc as misc_nn_ops
    body = torchvision.models.resnet50(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(body, 3)
    return torchvision.models.detection.FasterRCNN(backbone, num_classes=num_classes, min_size=min_size, max_size=max_size)


class PlanDataset(torch.utils.data.Dataset):
    """The images of a tool_data_bench --plan file, one item per image, in plan order."""

    def __init__(self, plan, image_dir):
        self.items, self.batches = [], []
        for line in open(plan):
            f = line.split()
            b, name, flip, w, n = int(f[0]), f[1], int(f[2]), int(f[3]), int(f[5])
            t = [float(x) for x in f[6:6 + 5 * n]]
            labels = [int(t[5 * k]) for k in range(n)]
            boxes = [t[5 * k + 1:5 * k + 5] for k in range(n)]
            if b == len(self.batches):
                self.batches.append([])
            self.batches[b].append(len(self.items))
            self.items.append((os.path.join(image_dir, name), flip, w, boxes, labels))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image
        import torchvision.transforms.functional as F
        path, flip, w, boxes, labels = self.items[i]
        img = F.convert_image_dtype(F.pil_to_tensor(Image.open(path).convert("RGB")), torch.float)
        boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        if flip:
            img = img.flip(-1)
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
        return img, {"boxes": boxes, "labels": torch.tensor(labels, dtype=torch.int64)}


def proc_cpu(pid):
    """utime + stime of process pid in seconds (all its threads)."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="train", choices=["train", "infer"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--height", type=int, default=480, help="synthetic images / infer")
    ap.add_argument("--width", type=int, default=640, help="synthetic images / infer")
    ap.add_argument("--min-size", type=int, default=0, help="GeneralizedRCNNTransform min_size (default: min(height, width))")
    ap.add_argument("--max-size", type=int, default=0, help="GeneralizedRCNNTransform max_size (default: max(height, width))")
    ap.add_argument("--batch", type=int, default=2, help="synthetic images / infer")
    ap.add_argument("--num-classes", type=int, default=81)
    ap.add_argument("--plan", help="tool_data_bench --plan output: train on these batches")
    ap.add_argument("--images", help="image directory of the plan's file names")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (with --plan)")
    ap.add_argument("--weights", help="initial state dict (from --save-init)")
    ap.add_argument("--save-init", help="write the random initial state dict here and exit")
    ap.add_argument("--info", action="store_true", help="print versions and backends and exit")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.0025)
    ap.add_argument("--channels-last", action="store_true", help="model and images in channels-last memory format")
    ap.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.info:
        print(json.dumps(info(a.threads)))
        return
    if a.flush_denormal:
        torch.set_flush_denormal(True)
    torch.manual_seed(0)
    min_size = a.min_size or min(a.height, a.width)
    max_size = a.max_size or max(a.height, a.width)
    model = build_model(a.num_classes, min_size, max_size)
    if a.save_init:
        torch.save(model.state_dict(), a.save_init)
        return
    if a.weights:
        model.load_state_dict(torch.load(a.weights))
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=mf)
    times, cpus, losses = [], [], []
    if a.mode == "train":
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=a.lr, momentum=0.9, weight_decay=1e-4)
        # references/detection/train.py: linear warm-up over the first iterations (factor 0.001, as ./train's configs)
        sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.001, total_iters=8000)
        workers = []
        if a.plan:
            ds = PlanDataset(a.plan, a.images)
            n_steps = min(a.warmup + a.iters, len(ds.batches))
            loader = torch.utils.data.DataLoader(ds, batch_sampler=ds.batches[:n_steps], num_workers=a.workers,
                                                 collate_fn=lambda b: tuple(zip(*b)))
            batches = iter(loader)
            workers = [w.pid for w in getattr(batches, "_workers", [])]
        else:
            imgs = [torch.rand(3, a.height, a.width) for _ in range(a.batch)]
            g = torch.Generator().manual_seed(1)
            targets = []
            for _ in range(a.batch):
                xy = torch.rand(3, 2, generator=g) * torch.tensor([a.width * 0.6, a.height * 0.6])
                wh = 32 + torch.rand(3, 2, generator=g) * torch.tensor([a.width * 0.3, a.height * 0.3])
                targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, a.num_classes, (3,), generator=g)})
            n_steps = a.warmup + a.iters
            batches = iter([(imgs, targets)] * n_steps)

        def cpu_now():
            return time.process_time() + sum(proc_cpu(p) for p in workers)

        t_prev, c_prev = time.perf_counter(), cpu_now()
        for i, (imgs, targets) in enumerate(batches):
            imgs = [im.contiguous(memory_format=mf) if im.dim() == 4 else im for im in imgs]
            loss_dict = model(list(imgs), list(targets))
            loss = sum(loss_dict.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            t, c = time.perf_counter(), cpu_now()
            times.append(t - t_prev)
            cpus.append(c - c_prev)
            losses.append(round(loss.item(), 4))
            t_prev, c_prev = t, c
            if i + 1 == n_steps:
                break
    else:
        imgs = [torch.rand(3, a.height, a.width) for _ in range(a.batch)]
        model.eval()
        with torch.no_grad():
            for i in range(a.warmup + a.iters):
                t0, c0 = time.perf_counter(), time.process_time()
                model(imgs)
                times.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
    timed, timed_cpu = times[a.warmup:], cpus[a.warmup:]
    med = statistics.median(timed)
    out = {"peer": "torchvision " + torchvision.__version__, "mode": a.mode, "threads": a.threads,
           "data": "plan " + a.plan if a.plan else f"synthetic {a.height}x{a.width}", "min_size": min_size,
           "max_size": max_size, "batch": a.batch if not a.plan else len(ds.batches[0]), "workers": a.workers if a.plan else 0,
           "s_per_iter_median": round(med, 4), "s_per_image": round(med / (len(ds.batches[0]) if a.plan else a.batch), 4),
           "cpu_s_per_iter_median": round(statistics.median(timed_cpu), 4),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "warmup": a.warmup, "iters": len(timed), "step_s": [round(x, 3) for x in times],
           "step_cpu_s": [round(x, 3) for x in cpus]}
    if losses:
        out["loss"] = losses
    out.update({"channels_last": a.channels_last, "flush_denormal": a.flush_denormal})
    out["env"] = info(a.threads)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
