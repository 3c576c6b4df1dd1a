#!/usr/bin/python3
"""Reference dumps for minidet's training tests (run with /usr/bin/python3: torch 1.13).

  sgd   -> tests/fixtures/train_sgd.safetensors: three torch.optim.SGD steps (momentum 0.9,
           weight decay 1e-4 on one param group, none on the other) with given gradients and lrs,
           then clip_grad_norm_ on a fourth gradient set; the learning rates of torchvision's
           reference warm-up + MultiStepLR schedule at a few iterations.
Usage: /usr/bin/python3 scripts/ref_train.py sgd
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


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "sgd"
    {"sgd": sgd}[cmd]()
