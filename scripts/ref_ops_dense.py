"""Section "ops_dense" of scripts/torch_reference.py: dense op references.

Writes tests/fixtures/ops_dense.safetensors for tests/test_ops_dense.c. Tensors are
named "<case>.<tensor>"; the case name starts with the op (conv_, bn_, relu_, maxpool_,
upsample_, add_, linear_) and "<case>.geom" (int64) holds the sizes the C test needs.
Inputs are random float32 from a seeded torch generator; the reference forward and
the autograd gradients (for a random upstream gradient "gy") are computed in float64
from those exact float32 values and stored as float32, so the C test measures only
its own rounding.
"""
import os

import torch
import torch.nn.functional as F

import st_io

SECTION = "ops_dense"
FILE = "ops_dense.safetensors"


def _f32(t):
    return t.detach().to(torch.float32).cpu().numpy()


class Case:
    def __init__(self, store, name, seed):
        self.store, self.name = store, name
        self.g = torch.Generator().manual_seed(seed)

    def randn(self, *shape, scale=1.0):
        # float32 draw, returned as float64 leaf holding exactly the float32 values
        return (torch.randn(*shape, generator=self.g, dtype=torch.float32) * scale).to(torch.float64)

    def put(self, key, t):
        self.store["%s.%s" % (self.name, key)] = _f32(t) if torch.is_tensor(t) and t.is_floating_point() else t

    def geom(self, *vals):
        self.store["%s.geom" % self.name] = torch.tensor(vals, dtype=torch.int64).numpy()


def conv(store, name, seed, N, C, H, W, OC, KH, KW, stride, pad, dil, bias=True):
    c = Case(store, name, seed)
    x = c.randn(N, C, H, W).requires_grad_()
    w = c.randn(OC, C, KH, KW, scale=(C * KH * KW) ** -0.5).requires_grad_()
    b = c.randn(OC).requires_grad_() if bias else None
    y = F.conv2d(x, w, b, stride=stride, padding=pad, dilation=dil)
    gy = c.randn(*y.shape)
    y.backward(gy)
    c.geom(N, C, H, W, OC, KH, KW, stride, pad, dil, 1 if bias else 0, y.shape[2], y.shape[3])
    for k, v in (("x", x), ("w", w), ("y", y), ("gy", gy), ("gx", x.grad), ("gw", w.grad)):
        c.put(k, v)
    if bias:
        c.put("b", b)
        c.put("gb", b.grad)


def frozen_bn(store, name, seed, N, C, H, W):
    c = Case(store, name, seed)
    x = c.randn(N, C, H, W).requires_grad_()
    weight, bias, mean = c.randn(C), c.randn(C), c.randn(C)
    var = c.randn(C).abs() + 0.1
    # torchvision.ops.misc.FrozenBatchNorm2d.forward, eps = 1e-5
    scale = weight * (var + 1e-5).rsqrt()
    shift = bias - mean * scale
    y = x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)
    gy = c.randn(*y.shape)
    y.backward(gy)
    c.geom(N, C, H, W)
    for k, v in (("x", x), ("weight", weight), ("bias", bias), ("running_mean", mean), ("running_var", var),
                 ("scale", scale), ("shift", shift), ("y", y), ("gy", gy), ("gx", x.grad)):
        c.put(k, v)


def relu(store, name, seed, n):
    c = Case(store, name, seed)
    x = c.randn(n)
    x[::17] = 0.0  # exact zeros: PyTorch's gradient there is 0
    x.requires_grad_()
    y = F.relu(x)
    gy = c.randn(n)
    y.backward(gy)
    c.geom(n)
    for k, v in (("x", x), ("y", y), ("gy", gy), ("gx", x.grad)):
        c.put(k, v)


def maxpool(store, name, seed, N, C, H, W, k, s, p, ties=False):
    c = Case(store, name, seed)
    x = c.randn(N, C, H, W)
    if ties:  # few distinct values: exercises the first-maximum rule
        x = torch.round(x * 1.5)
    x.requires_grad_()
    y = F.max_pool2d(x, k, s, p)
    gy = c.randn(*y.shape)
    y.backward(gy)
    c.geom(N, C, H, W, k, s, p, y.shape[2], y.shape[3])
    for key, v in (("x", x), ("y", y), ("gy", gy), ("gx", x.grad)):
        c.put(key, v)


def upsample(store, name, seed, N, C, H, W, OH, OW):
    c = Case(store, name, seed)
    x = c.randn(N, C, H, W).requires_grad_()
    y = F.interpolate(x, size=(OH, OW), mode="nearest")  # torchvision FPN top-down path
    gy = c.randn(*y.shape)
    y.backward(gy)
    c.geom(N, C, H, W, OH, OW)
    for k, v in (("x", x), ("y", y), ("gy", gy), ("gx", x.grad)):
        c.put(k, v)


def add(store, name, seed, n):
    c = Case(store, name, seed)
    a = c.randn(n).requires_grad_()
    b = c.randn(n).requires_grad_()
    y = a + b
    gy = c.randn(n)
    y.backward(gy)
    c.geom(n)
    for k, v in (("a", a), ("b", b), ("y", y), ("gy", gy), ("ga", a.grad), ("gb", b.grad)):
        c.put(k, v)


def linear(store, name, seed, B, IN, OUT, bias=True):
    c = Case(store, name, seed)
    x = c.randn(B, IN).requires_grad_()
    w = c.randn(OUT, IN, scale=IN ** -0.5).requires_grad_()
    b = c.randn(OUT).requires_grad_() if bias else None
    y = F.linear(x, w, b)
    gy = c.randn(B, OUT)
    y.backward(gy)
    c.geom(B, IN, OUT, 1 if bias else 0)
    for k, v in (("x", x), ("w", w), ("y", y), ("gy", gy), ("gx", x.grad), ("gw", w.grad)):
        c.put(k, v)
    if bias:
        c.put("b", b)
        c.put("gb", b.grad)


def generate(out_dir):
    store = {}
    #      name                 seed  N  C   H   W  OC KH KW  s  p  d
    conv(store, "conv_odd_3x3", 1, 2, 3, 7, 5, 4, 3, 3, 1, 1, 1)
    conv(store, "conv_nonsq_s2", 2, 1, 4, 9, 6, 5, 3, 3, 2, 0, 1)
    conv(store, "conv_pad2", 3, 2, 2, 6, 7, 3, 3, 3, 1, 2, 1)
    conv(store, "conv_dil2", 4, 1, 3, 9, 8, 4, 3, 3, 1, 2, 2)
    conv(store, "conv_1x1s1", 5, 2, 8, 5, 7, 6, 1, 1, 1, 0, 1, bias=False)
    conv(store, "conv_1x1s2", 6, 2, 6, 7, 9, 5, 1, 1, 2, 0, 1, bias=False)
    conv(store, "conv_3x3s2p1", 7, 2, 5, 11, 8, 6, 3, 3, 2, 1, 1)
    conv(store, "conv_7x7s2p3", 8, 1, 3, 19, 17, 4, 7, 7, 2, 3, 1, bias=False)
    conv(store, "conv_rect_2x3", 9, 2, 3, 6, 5, 2, 2, 3, 1, 1, 1)
    conv(store, "conv_s3_d2_p1", 10, 1, 2, 13, 10, 3, 3, 2, 3, 1, 2)
    conv(store, "conv_par_3x3", 11, 1, 16, 20, 18, 16, 3, 3, 1, 1, 1)  # big enough for the OpenMP paths
    frozen_bn(store, "bn_odd", 20, 2, 5, 7, 3)
    relu(store, "relu_vec", 30, 301)
    maxpool(store, "maxpool_k3s2p1_odd", 40, 2, 3, 9, 7, 3, 2, 1)
    maxpool(store, "maxpool_k3s2p1_even", 41, 1, 2, 8, 10, 3, 2, 1)
    maxpool(store, "maxpool_k3s2p1_ties", 42, 1, 2, 7, 9, 3, 2, 1, ties=True)
    maxpool(store, "maxpool_k1s2p0", 43, 2, 3, 7, 5, 1, 2, 0)
    maxpool(store, "maxpool_k1s2p0_even", 44, 1, 2, 6, 8, 1, 2, 0)
    upsample(store, "upsample_5x7_9x13", 50, 1, 3, 5, 7, 9, 13)
    upsample(store, "upsample_2x", 51, 2, 2, 4, 6, 8, 12)
    upsample(store, "upsample_13x7_25x13", 52, 1, 2, 13, 7, 25, 13)
    upsample(store, "upsample_down_7x9_4x5", 53, 1, 2, 7, 9, 4, 5)
    upsample(store, "upsample_3x_6x5_18x15", 54, 1, 1, 6, 5, 18, 15)
    # sizes where floor(dst * (float)in/out) differs from the exact integer rule (PyTorch uses the float one)
    upsample(store, "upsample_floatrule_30x26_58x44", 55, 1, 1, 30, 26, 58, 44)
    add(store, "add_vec", 60, 257)
    linear(store, "linear_bias", 70, 5, 12, 7)
    linear(store, "linear_nobias", 71, 3, 33, 10, bias=False)
    path = os.path.join(out_dir, FILE)
    st_io.save(path, store, metadata={"made_by": "scripts/torch_reference.py ops_dense",
                                      "torch": torch.__version__})
    print("  wrote %s (%d tensors, %d bytes)" % (path, len(store), os.path.getsize(path)))
