"""Section "avgpool" of scripts/torch_reference.py: torch.nn.functional.avg_pool2d references.

Writes tests/fixtures/avgpool.safetensors for tests/test_avgpool.c. For each case "<case>":
input "x", output "y", a random upstream gradient "gy" and the autograd gradient "gx";
"<case>.geom" (int64) = N, C, H, W, k, stride, pad, ceil_mode, count_include_pad, OH, OW.
Computed in float64 on the exact float32 inputs, stored as float32. The cases cover
ResNet-vd's shortcut pool (k 2, stride 2, ceil_mode, count_include_pad=False) on odd and even
sizes (a lone last row/column), 1-pixel inputs, padded windows clipped at H + pad, and a
ceil_mode last window that torch drops because it would start in the padding.
Run: /usr/bin/python3 scripts/torch_reference.py avgpool
"""
import os

import torch
import torch.nn.functional as F

import st_io

SECTION = "avgpool"
FILE = "avgpool.safetensors"

CASES = [  # name, seed, N, C, H, W, k, stride, pad, ceil_mode, count_include_pad
    ("vd_odd", 1, 2, 3, 7, 5, 2, 2, 0, True, False),
    ("vd_even", 2, 1, 4, 6, 8, 2, 2, 0, True, False),
    ("vd_one", 3, 1, 2, 1, 3, 2, 2, 0, True, False),
    ("vd_incl", 4, 1, 2, 5, 5, 2, 2, 0, True, True),
    ("k3_pad_ceil_incl", 5, 1, 3, 6, 7, 3, 2, 1, True, True),
    ("k3_pad_ceil_excl", 6, 1, 3, 6, 7, 3, 2, 1, True, False),
    ("k3_pad_floor", 7, 2, 2, 7, 6, 3, 2, 1, False, True),
    ("ceil_drop_last", 8, 1, 2, 4, 5, 2, 3, 1, True, True),
    ("stride1", 9, 1, 2, 4, 4, 2, 1, 0, False, False),
]


def generate(out_dir):
    store = {}
    for name, seed, N, C, H, W, k, s, p, ceil, incl in CASES:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(N, C, H, W, generator=g, dtype=torch.float32).to(torch.float64).requires_grad_()
        y = F.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=incl)
        gy = torch.randn(*y.shape, generator=g, dtype=torch.float32).to(torch.float64)
        y.backward(gy)
        f = lambda t: t.detach().to(torch.float32).numpy()
        for key, v in (("x", x), ("y", y), ("gy", gy), ("gx", x.grad)):
            store["%s.%s" % (name, key)] = f(v)
        store["%s.geom" % name] = torch.tensor([N, C, H, W, k, s, p, int(ceil), int(incl), y.shape[2], y.shape[3]],
                                               dtype=torch.int64).numpy()
    out = os.path.join(out_dir, FILE)
    st_io.save(out, store, metadata={"torch": torch.__version__, "made_by": "scripts/torch_reference.py avgpool"})
    print("wrote", os.path.normpath(out), sum(v.nbytes for v in store.values()), "bytes")


if __name__ == "__main__":
    generate(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
