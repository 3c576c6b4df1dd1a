"""Reference for src/ops/batchnorm.c: torch.nn.BatchNorm2d in train() mode.

Writes tests/fixtures/batchnorm.safetensors for tests/test_batchnorm.c. For each case
"<case>": x, gamma, beta, running_mean / running_var BEFORE the step ("rm0", "rv0"), the
output "y", the running statistics AFTER one forward ("rm1", "rv1"), a random upstream
gradient "gy" and the autograd gradients "gx", "ggamma", "gbeta"; "<case>.geom" (int64) =
N, C, H, W. The module runs in float64 on the exact float32 inputs (momentum 0.1, eps 1e-5),
results are stored as float32, so the C test measures only its own rounding.
Run: /usr/bin/python3 scripts/ref_batchnorm.py
"""
import os

import torch

import st_io

CASES = [  # name, seed, N, C, H, W, input scale, input offset
    ("bn_a", 1, 2, 3, 5, 7, 1.0, 0.0),
    ("bn_b", 2, 4, 8, 6, 6, 3.0, 2.5),   # offset mean, large variance
    ("bn_c", 3, 1, 5, 1, 3, 0.5, -1.0),  # M = 3 (M = 2 makes dx a pure rounding residue: xhat = +-1)
    ("bn_d", 4, 3, 16, 9, 11, 1.0, 0.0),
]


def main():
    store = {}
    for name, seed, N, C, H, W, scale, off in CASES:
        g = torch.Generator().manual_seed(seed)

        def rnd(*s, sc=1.0, o=0.0):
            return (torch.randn(*s, generator=g, dtype=torch.float32) * sc + o).to(torch.float64)

        x = rnd(N, C, H, W, sc=scale, o=off).requires_grad_()
        gamma = rnd(C, sc=0.5, o=1.0)
        beta = rnd(C, sc=0.5)
        rm0 = rnd(C, sc=0.3)
        rv0 = rnd(C, sc=0.3).abs() + 0.5
        bn = torch.nn.BatchNorm2d(C, eps=1e-5, momentum=0.1).double().train()
        with torch.no_grad():
            bn.weight.copy_(gamma)
            bn.bias.copy_(beta)
            bn.running_mean.copy_(rm0)
            bn.running_var.copy_(rv0)
        y = bn(x)
        gy = rnd(*y.shape)
        y.backward(gy)
        f = lambda t: t.detach().to(torch.float32).numpy()
        for k, v in [("x", x), ("gamma", gamma), ("beta", beta), ("rm0", rm0), ("rv0", rv0), ("y", y),
                     ("rm1", bn.running_mean), ("rv1", bn.running_var), ("gy", gy), ("gx", x.grad),
                     ("ggamma", bn.weight.grad), ("gbeta", bn.bias.grad)]:
            store["%s.%s" % (name, k)] = f(v)
        store["%s.geom" % name] = torch.tensor([N, C, H, W], dtype=torch.int64).numpy()
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "batchnorm.safetensors")
    st_io.save(out, store, metadata={"torch": torch.__version__, "script": "scripts/ref_batchnorm.py"})
    print("wrote", os.path.normpath(out), sum(v.nbytes for v in store.values()), "bytes")


if __name__ == "__main__":
    main()
