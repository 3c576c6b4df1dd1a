"""Section "ops_heads" of scripts/torch_reference.py: loss and RoIAlign references.

Writes tests/fixtures/ops_heads.safetensors for tests/test_ops_heads.c. Tensors are named
"<case>.<tensor>"; "<case>.geom" (int64) holds the sizes/flags the C test needs.

  ce_*     F.cross_entropy(x, labels, ignore_index=...) (mean): x, labels, loss, probs
           (softmax), dloss (upstream scalar), gx. ce_all_ignored stores only inputs:
           PyTorch returns 0/0 = NaN there, minidet's contract (ops.h) is loss 0, no gradient.
  bce_*    F.binary_cross_entropy_with_logits(x, t) (mean) incl. |x| = 30 and soft targets.
  sl1_*    F.smooth_l1_loss(x, t, beta, reduction="sum") for beta 1/9, 1, 0 (0 is L1),
           incl. d = 0 exactly and |d| = beta.
  roi_*    torchvision.ops.roi_align on one feature map (roi.feat, 2 x 3 x 13 x 17) with
           RoIs (<case>.rois: batch index, x1, y1, x2, y2 in image coordinates for
           spatial_scale 1/k): inside, partly outside, entirely outside, zero width, tiny,
           larger than the map, inverted, thin strip at the edge, on the second image; for
           aligned {0,1} x sampling_ratio {2,0} x scale {1/4,1/8} x output {7x7, 3x2}; plus
           roi_big: adaptive sampling on RoIs far larger than the map (hundreds of samples
           per bin axis). y, gy (random upstream gradient), gx (autograd);
           geom = R, PH, PW, k (spatial_scale = 1/k), sampling_ratio, aligned.
  sl1_* also store beta. d = x - t. Smooth-L1 with beta = 0 goes through torch's smooth_l1
           kernel, whose gradient at d == 0 is -1 (sl1_b0 has such an element).
The loss references are computed in float64 from the float32 inputs; RoIAlign runs in
float32 (its sample positions are float32 arithmetic in torchvision's kernel, so that is
the exact reference), all stored as float32.
"""
import os

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

import st_io

SECTION = "ops_heads"
FILE = "ops_heads.safetensors"


def _np(t):
    t = t.detach().cpu()
    return (t.to(torch.float32) if t.is_floating_point() else t.to(torch.int64)).numpy()


class Case:
    def __init__(self, store, name, seed):
        self.store, self.name = store, name
        self.g = torch.Generator().manual_seed(seed)

    def randn(self, *shape, scale=1.0):
        return torch.randn(*shape, generator=self.g, dtype=torch.float32) * scale

    def put(self, key, t):
        self.store["%s.%s" % (self.name, key)] = _np(torch.as_tensor(t))

    def geom(self, *vals):
        self.store["%s.geom" % self.name] = torch.tensor(vals, dtype=torch.int64).numpy()


def cross_entropy(store, name, seed, N, K, ignore, n_ignored, scale=2.0, all_ignored=False):
    c = Case(store, name, seed)
    x32 = c.randn(N, K, scale=scale)
    x32[0, 0] = 60.0  # large logits: the softmax must be computed stably
    x32[1, 1] = -45.0
    labels = torch.randint(0, K, (N,), generator=c.g)
    labels[labels == ignore] = (ignore + 1) % K  # only the chosen rows are ignored
    if all_ignored:
        labels[:] = ignore
    else:
        idx = torch.randperm(N, generator=c.g)[:n_ignored]
        labels[idx] = ignore
    dloss = c.randn(1) + 1.5
    c.geom(N, K, ignore, 1 if all_ignored else 0)
    c.put("x", x32)
    c.put("labels", labels)
    c.put("dloss", dloss)
    if all_ignored:
        return
    x = x32.double().requires_grad_()
    loss = F.cross_entropy(x, labels, ignore_index=ignore)
    loss.backward(dloss.double()[0])
    c.put("loss", loss.reshape(1))
    c.put("probs", torch.softmax(x, dim=1))
    c.put("gx", x.grad)


def bce(store, name, seed, n):
    c = Case(store, name, seed)
    x32 = c.randn(n, scale=4.0)
    x32[:4] = torch.tensor([30.0, -30.0, 29.5, -31.0])
    t32 = (torch.rand(n, generator=c.g) > 0.5).float()
    t32[4:8] = torch.tensor([0.3, 0.75, 0.5, 0.0])  # soft targets are allowed
    t32[0], t32[1] = 0.0, 1.0                       # the costly side of the large logits
    dloss = c.randn(1) + 1.0
    x = x32.double().requires_grad_()
    loss = F.binary_cross_entropy_with_logits(x, t32.double())
    loss.backward(dloss.double()[0])
    c.geom(n)
    for k, v in (("x", x32), ("t", t32), ("dloss", dloss), ("loss", loss.reshape(1)), ("gx", x.grad)):
        c.put(k, v)


def smooth_l1(store, name, seed, n, beta):
    c = Case(store, name, seed)
    x32 = c.randn(n, scale=1.5)
    t32 = c.randn(n, scale=1.5)
    t32[0] = x32[0]  # d == 0 exactly
    if beta > 0:     # |d| == beta (as exactly as float32 allows) and just either side
        t32[1] = x32[1] - beta
        t32[2] = x32[2] + 0.999 * beta
        t32[3] = x32[3] - 1.001 * beta
    dloss = c.randn(1) + 1.0
    x = x32.double().requires_grad_()
    loss = F.smooth_l1_loss(x, t32.double(), beta=beta, reduction="sum")
    loss.backward(dloss.double()[0])
    c.geom(n)
    c.put("beta", torch.tensor([beta], dtype=torch.float32))
    for k, v in (("x", x32), ("t", t32), ("dloss", dloss), ("loss", loss.reshape(1)), ("gx", x.grad)):
        c.put(k, v)


# RoIs in feature-map coordinates (x1, y1, x2, y2) and their image index; 13 x 17 map (H x W).
ROIS_FEAT = [
    (0, 2.3, 1.7, 9.6, 8.2),       # inside
    (0, -3.1, -2.4, 5.2, 4.9),     # partly outside (top-left)
    (1, 12.5, 8.3, 19.7, 15.1),    # partly outside (bottom-right)
    (0, 20.0, 15.0, 26.0, 22.0),   # entirely outside (beyond W, H)
    (1, -9.0, -8.0, -3.0, -2.5),   # entirely outside (negative)
    (0, 4.4, 3.0, 4.4, 9.0),       # zero width
    (1, 6.1, 5.2, 6.4, 5.45),      # tiny
    (1, -4.0, -5.0, 22.0, 19.0),   # larger than the map
    (1, 1.2, 3.3, 14.8, 11.9),     # inside, second image
    (0, 8.0, 6.0, 3.0, 2.0),       # inverted (x2 < x1, y2 < y1)
    (0, 16.2, 0.3, 16.9, 12.95),   # thin strip at the right edge
]


def roi_cases(store):
    g = torch.Generator().manual_seed(100)
    feat = torch.randn(2, 3, 13, 17, generator=g, dtype=torch.float32)
    store["roi.feat"] = _np(feat)
    base = torch.tensor(ROIS_FEAT, dtype=torch.float32)
    rois = {}
    for k in (4, 8):
        r = base.clone()
        r[:, 1:] *= k  # image coordinates; * 4 and * 8 are exact in float32
        rois[k] = r
    seed = 101
    for aligned in (0, 1):
        for sr in (2, 0):
            for k in (4, 8):
                for (ph, pw) in ((7, 7), (3, 2)):
                    name = "roi_a%d_sr%d_s%d_%dx%d" % (aligned, sr, k, ph, pw)
                    _roi_case(store, name, seed, feat, rois[k], k, ph, pw, sr, aligned)
                    seed += 1
    # adaptive sampling with hundreds of samples per bin axis (exercises chunked tables)
    big = torch.tensor([[1, -500.0, -400.0, 600.0, 700.0], [0, -300.0, 2.5, 310.0, 9.5]], dtype=torch.float32)
    _roi_case(store, "roi_big", seed, feat, big, 1, 2, 3, 0, 0)


def _roi_case(store, name, seed, feat, rois, k, ph, pw, sr, aligned):
    c = Case(store, name, seed)
    x = feat.clone().requires_grad_()
    y = roi_align(x, rois, (ph, pw), spatial_scale=1.0 / k, sampling_ratio=sr, aligned=bool(aligned))
    gy = c.randn(*y.shape)
    y.backward(gy)
    c.geom(rois.shape[0], ph, pw, k, sr, aligned)
    c.put("rois", rois)
    c.put("y", y)
    c.put("gy", gy)
    c.put("gx", x.grad)


def generate(out_dir):
    store = {}
    cross_entropy(store, "ce_ign_neg1", 1, 11, 5, -1, 3)
    cross_entropy(store, "ce_ign_class", 2, 9, 4, 2, 2, scale=4.0)
    cross_entropy(store, "ce_many_classes", 3, 6, 91, -1, 1)
    cross_entropy(store, "ce_all_ignored", 4, 4, 3, -1, 0, all_ignored=True)
    bce(store, "bce_mixed", 10, 67)
    smooth_l1(store, "sl1_b9", 20, 53, 1.0 / 9.0)
    smooth_l1(store, "sl1_b1", 21, 41, 1.0)
    smooth_l1(store, "sl1_b0", 22, 37, 0.0)
    roi_cases(store)
    path = os.path.join(out_dir, FILE)
    st_io.save(path, store, metadata={"made_by": "scripts/torch_reference.py ops_heads",
                                      "torch": torch.__version__})
    print("wrote %s (%d tensors, %d bytes)" % (path, len(store), os.path.getsize(path)))


if __name__ == "__main__":
    generate(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures"))
