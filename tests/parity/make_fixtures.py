#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the PyTorch reference fixtures for tests/parity/test_parity.cpp.

Run by hand, from anywhere, with the system interpreter that has Debian's python3-torch:

    /usr/bin/python3 tests/parity/make_fixtures.py

CI never runs this script: the JSON files it writes under tests/parity/fixtures/ are committed, and
the C++ test only reads them. Regenerating rewrites every file; with the same PyTorch version the
output is byte-for-byte the same (seeded torch.Generator, deterministic CPU kernels).

Fixture format (one file per op, a JSON array with one case per line):
    {"name": "softmax/float64/rank3/dim1", "op": "softmax", "dtype": "float64",
     "options": {"dim": 1},                      # op options, PyTorch's names and values
     "input": T, "target": T, "weight": T, ...   # T = {"dtype", "shape", "values"} (row-major)
     "grad_out": T,                              # upstream gradient used for backward
     "output": T,                                # the op's output
     "grads": {"input": T, ...}}                 # gradient of <grad_out, output> w.r.t. each
Floats are written with repr (shortest string that round-trips exactly, at most 17 significant
digits); non-finite numbers are the strings "inf", "-inf", "nan". float32 values are float32
numbers written as the (exact) double they convert to.

Every value comes from PyTorch (autograd for gradients), with one exception: the gradient of
logsumexp is written as g * torch.softmax(x, dim), the documented derivative. PyTorch 1.13's
LogsumexpBackward computes g * exp(x - logsumexp(x)), which loses all accuracy when |logsumexp|
is large (x = [1e30] * 4 gives [1, 1, 1, 1] instead of [0.25] * 4; float32 [1e4, 1e4, -1e4] gives
0.4999 instead of 0.5). On well-conditioned random inputs (|x| of order 1) the script first
checks that autograd and the formula agree to 1e-13.

Each float32 case is also recomputed by PyTorch in float64 from the same (float32) inputs, and the
script stops if the float32 reference is further from it than the C++ test's float32 tolerance:
a fixture must never encode an imprecision of the reference.

Cases where tapegrad's documented policy differs from PyTorch on purpose (fully masked softmax rows,
mean reduction with every target ignored: PyTorch gives NaN) are not generated; the script checks
that no reference value is NaN.
"""

import json
import math
import os
import sys
import warnings

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("make_fixtures: no torch in this interpreter; run it with /usr/bin/python3 (Debian's python3-torch)")

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures")

F64, F32 = torch.float64, torch.float32
DTYPES = {"float64": F64, "float32": F32}
INF = float("inf")

# (rtol, floor) per dtype; must match tolerance() in test_parity.cpp: |a - b| <= rtol * max(|b|, floor).
TOL = {"float64": (1e-10, 1e-4), "float32": (1e-5, 1e-1)}

warnings.filterwarnings("ignore")  # kl_div's reduction='mean' warning


# ---------------------------------------------------------------- encoding
def enc_float(v):
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def enc(t):
    t = t.detach()
    if t.dtype == torch.int64:
        values = [int(v) for v in t.reshape(-1).tolist()]
    else:
        values = [enc_float(v) for v in t.double().reshape(-1).tolist()]
    return {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "values": values}


# ---------------------------------------------------------------- random inputs
class Rng:
    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def randn(self, shape, dtype, scale=1.0):
        return (torch.randn(shape, generator=self.g, dtype=F64) * scale).to(dtype)

    def rand(self, shape, dtype):
        return torch.rand(shape, generator=self.g, dtype=F64).to(dtype)

    def randint(self, low, high, shape):
        return torch.randint(low, high, shape, generator=self.g, dtype=torch.int64)


def check_finite(name, what, t, allow_neg_inf=False):
    v = t.detach().double()
    bad = torch.isnan(v) | (v == INF)
    if not allow_neg_inf:
        bad |= v == -INF
    if bool(bad.any()):
        sys.exit(f"make_fixtures: case {name}: {what} has non-finite values {v.tolist()}")


def close(a, b, dtype_name):
    rtol, floor = TOL[dtype_name]
    a, b = a.detach().double().reshape(-1), b.detach().double().reshape(-1)
    for x, y in zip(a.tolist(), b.tolist()):
        if math.isinf(y) or math.isinf(x):
            if x != y:
                return False
            continue
        if not abs(x - y) <= rtol * max(abs(y), floor):
            return False
    return True


# ---------------------------------------------------------------- evaluation
def evaluate(fn, tensors, diff, grad_out, grad_override=None):
    """Runs fn(**tensors) with the names in `diff` requiring grad; returns (out, {name: grad})."""
    leaves = {k: (v.detach().clone().requires_grad_(k in diff) if v.is_floating_point() else v)
              for k, v in tensors.items()}
    out = fn(**leaves)
    grads = torch.autograd.grad(out, [leaves[k] for k in diff], grad_out)
    grads = dict(zip(diff, grads))
    if grad_override is not None:
        grads.update(grad_override(leaves, grad_out))
    return out.detach(), {k: g.detach() for k, g in grads.items()}


def make_case(cases, name, op, dtype_name, options, fn, tensors, diff, grad_out=None, rng=None,
              grad_override=None, allow_neg_inf=False):
    """grad_out None: scalar loss, grad_out = 1; "random": normal of the output's shape."""
    with torch.no_grad():
        probe = fn(**tensors)
    if grad_out is None:
        assert probe.dim() == 0, name
        g = torch.ones((), dtype=probe.dtype)
    else:
        g = rng.randn(list(probe.shape), probe.dtype)
    out, grads = evaluate(fn, tensors, diff, g, grad_override)
    check_finite(name, "output", out, allow_neg_inf)
    for k, v in grads.items():
        check_finite(name, f"grad {k}", v)

    if dtype_name == "float32":
        # The float32 reference must agree with the float64 one on the same inputs.
        t64 = {k: (v.double() if v.is_floating_point() else v) for k, v in tensors.items()}
        out64, grads64 = evaluate(fn, t64, diff, g.double(), grad_override)
        if not close(out, out64, "float32"):
            sys.exit(f"make_fixtures: case {name}: PyTorch float32 output is not within the float32 tolerance "
                     f"of float64:\n{out.tolist()}\n{out64.tolist()}")
        for k in grads:
            if not close(grads[k], grads64[k], "float32"):
                sys.exit(f"make_fixtures: case {name}: PyTorch float32 grad {k} is not within the float32 "
                         f"tolerance of float64:\n{grads[k].tolist()}\n{grads64[k].tolist()}")

    case = {"name": name, "op": op, "dtype": dtype_name, "options": options}
    for k, v in tensors.items():
        case[k] = enc(v)
    case["grad_out"] = enc(g)
    case["output"] = enc(out)
    case["grads"] = {k: enc(v) for k, v in grads.items()}
    cases.append(case)


def write(fname, cases):
    os.makedirs(OUT_DIR, exist_ok=True)
    names = [c["name"] for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"duplicate case names: {sorted(dup)}"
    path = os.path.join(OUT_DIR, fname)
    with open(path, "w") as f:
        f.write("[\n")
        f.write(",\n".join(json.dumps(c, allow_nan=False, separators=(",", ":")) for c in cases))
        f.write("\n]\n")
    print(f"{path}: {len(cases)} cases, {os.path.getsize(path)} bytes")


# ---------------------------------------------------------------- softmax family
# (shape, dims): rank 1-4, dims 0 / 1 / -1 / the middle ones, K = 1.
SOFTMAX_SHAPES = [
    ([5], [-1]),
    ([1], [0]),                      # K = 1, rank 1
    ([3, 4], [0, 1, -2]),
    ([4, 1], [1]),                   # K = 1
    ([1, 5], [0, 1]),                # K = 1 along dim 0
    ([2, 3, 4], [0, 1, -1]),         # 1 is the middle dim
    ([2, 1, 3], [1]),                # K = 1 in the middle
    ([2, 3, 2, 3], [0, 1, 2, -1]),
]

# Large logits per dtype (max-subtraction must keep them finite).
LARGE = {"float64": [1e4, 1e30], "float32": [80.0, 1e4]}


def with_masks(rng, x, dim, frac=0.35):
    """-inf at random entries, keeping at least one finite entry in every row along dim."""
    mask = rng.rand(list(x.shape), F64) < frac
    # Guarantee a finite entry per row: unmask index j = (row-dependent) along dim.
    k = x.shape[dim]
    moved = mask.movedim(dim, -1)
    flat = moved.reshape(-1, k)
    for r in range(flat.shape[0]):
        if bool(flat[r].all()):
            flat[r, r % k] = False
    mask = flat.reshape(moved.shape).movedim(-1, dim)
    return x.masked_fill(mask, -INF)


def softmax_inputs(rng, dtype_name):
    """Yields (tag, x, dims) special-value inputs."""
    dt = DTYPES[dtype_name]
    for s in LARGE[dtype_name]:
        yield f"large{s:g}", rng.randn([3, 5], dt, s), [0, 1]
        yield f"large{s:g}_rank3", rng.randn([2, 3, 4], dt, s), [1]
        # exact ties at the top plus a far-away entry
        row = torch.tensor([[s, s, -s, 0.0], [-s, s, 0.5 * s, s]], dtype=F64).to(dt)
        yield f"large{s:g}_ties", row, [1]
        yield f"large{s:g}_equal", torch.full([2, 4], s, dtype=F64).to(dt), [1]
        yield f"large{s:g}_equal_neg", torch.full([2, 4], -s, dtype=F64).to(dt), [1]
    yield "equal_rows", torch.full([3, 4], 2.5, dtype=F64).to(dt), [0, 1]
    eq = rng.randn([4, 5], dt)
    eq[1] = 0.0
    eq[3] = -7.25
    yield "some_equal_rows", eq, [1]
    yield "masked", with_masks(rng, rng.randn([4, 6], dt), 1), [1]
    yield "masked_dim0", with_masks(rng, rng.randn([5, 3], dt), 0), [0]
    yield "masked_rank3", with_masks(rng, rng.randn([2, 5, 3], dt), 1), [1]
    yield "masked_rank4", with_masks(rng, rng.randn([2, 2, 4, 3], dt), 2), [2]
    one = torch.full([3, 4], -INF, dtype=F64).to(dt)
    one[0, 0], one[1, 2], one[2, 3] = 1.5, -3.0, 0.0       # a single finite entry per row
    yield "masked_single_finite", one, [1]
    big = with_masks(rng, rng.randn([3, 5], dt, LARGE[dtype_name][-1]), 1)
    yield "masked_large", big, [1]


def softmax_family():
    files = {"softmax": [], "log_softmax": [], "logsumexp": []}
    torch_fn = {"softmax": torch.softmax, "log_softmax": torch.log_softmax}
    rng = Rng(1)
    for dtype_name, dt in DTYPES.items():
        inputs = []
        for shape, dims in SOFTMAX_SHAPES:
            tag = "rank{}_{}".format(len(shape), "x".join(map(str, shape)))
            inputs.append((tag, None, shape, dims))
        for tag, x, dims in softmax_inputs(rng, dtype_name):
            inputs.append((tag, x, list(x.shape), dims))
        for tag, x0, shape, dims in inputs:
            for dim in dims:
                for op in ("softmax", "log_softmax", "logsumexp"):
                    x = x0 if x0 is not None else rng.randn(shape, dt, 2.0)
                    if op == "logsumexp":
                        for keepdim in (False, True):
                            name = f"{op}/{dtype_name}/{tag}/dim{dim}/keepdim{int(keepdim)}"
                            fn = (lambda input, d=dim, k=keepdim: torch.logsumexp(input, d, keepdim=k))

                            def lse_grad(leaves, g, d=dim, k=keepdim):
                                # g * softmax(x): see the module docstring.
                                gg = g if k else g.unsqueeze(d)
                                return {"input": gg * torch.softmax(leaves["input"].detach(), d)}
                            make_case(files[op], name, op, dtype_name, {"dim": dim, "keepdim": keepdim}, fn,
                                      {"input": x}, ["input"], "random", rng, grad_override=lse_grad,
                                      allow_neg_inf=True)
                    else:
                        name = f"{op}/{dtype_name}/{tag}/dim{dim}"
                        fn = (lambda input, d=dim, f=torch_fn[op]: f(input, d))
                        make_case(files[op], name, op, dtype_name, {"dim": dim}, fn, {"input": x}, ["input"],
                                  "random", rng, allow_neg_inf=True)
        # Temperature: softmax(x / T), log_softmax(x / T); T as a number or as a tensor (rank 0 and
        # broadcast [C]) that requires grad.
        for op in ("softmax", "log_softmax"):
            f = torch_fn[op]
            for T in (0.5, 3.0):
                x = rng.randn([3, 4], dt, 2.0)
                make_case(files[op], f"{op}/{dtype_name}/temperature{T:g}/dim1", op, dtype_name,
                          {"dim": 1, "temperature": T}, (lambda input, f=f, T=T: f(input / T, 1)),
                          {"input": x}, ["input"], "random", rng)
            for tshape in ([], [4]):
                x = rng.randn([3, 4], dt, 2.0)
                T = (rng.rand(tshape, F64) * 2 + 0.5).to(dt)
                make_case(files[op], f"{op}/{dtype_name}/temperature_tensor{len(tshape)}/dim1", op,
                          dtype_name, {"dim": 1}, (lambda input, temperature, f=f: f(input / temperature, 1)),
                          {"input": x, "temperature": T}, ["input", "temperature"], "random", rng)
    for op, cases in files.items():
        write(f"{op}.json", cases)


def check_lse_formula():
    """On well-conditioned inputs autograd and g * softmax(x) agree (to 1e-13)."""
    rng = Rng(99)
    for shape, dims in SOFTMAX_SHAPES:
        for dim in dims:
            for keepdim in (False, True):
                x = rng.randn(shape, F64, 3.0).requires_grad_()
                y = torch.logsumexp(x, dim, keepdim=keepdim)
                g = rng.randn(list(y.shape), F64)
                (auto,) = torch.autograd.grad(y, x, g)
                formula = (g if keepdim else g.unsqueeze(dim)) * torch.softmax(x.detach(), dim)
                if not torch.allclose(auto, formula, rtol=1e-13, atol=1e-15):
                    sys.exit(f"make_fixtures: logsumexp formula disagrees with autograd for {shape} dim {dim}")


# ---------------------------------------------------------------- losses
REDUCTIONS = ("none", "mean", "sum")


def loss_case(cases, name, op, dtype_name, options, fn, tensors, diff, reduction, rng):
    make_case(cases, name, op, dtype_name, options, fn, tensors, diff,
              "random" if reduction == "none" else None, rng)


# Input shapes (class dim 1, or 0 for the unbatched [C]); N = 1 and C = 1 included.
CLASS_SHAPES = [("NC", [5, 4]), ("NCd1", [3, 4, 2]), ("NCd1d2", [2, 3, 2, 2]), ("C", [4]), ("N1", [1, 4]),
                ("C1", [4, 1])]


def sample_shape(shape):
    return [] if len(shape) == 1 else [shape[0]] + shape[2:]


def n_classes(shape):
    return shape[0] if len(shape) == 1 else shape[1]


def index_target(rng, shape, ignore):
    """int64 class indices; ignore in {"absent", "present" (-100 at some samples), "custom" (class 1
    used as ignore_index)}. At least one sample is never ignored (no mean over nothing)."""
    C = n_classes(shape)
    t = rng.randint(0, C, sample_shape(shape))
    flat = t.reshape(-1)
    if ignore == "absent":
        return t, -100
    if ignore == "present":
        m = rng.rand([flat.numel()], F64) < 0.4
        m[0] = flat.numel() > 1          # the first is ignored when there are others ...
        m[-1] = False if flat.numel() > 1 else m[-1]   # ... and the last never
        flat[m] = -100
        return t, -100
    assert C > 1
    flat[0] = 1                          # ignore_index = 1 is present
    if flat.numel() > 1 and bool((flat == 1).all()):
        flat[-1] = 0
    return t, 1


def prob_target(rng, shape, dt, kind):
    """Class probabilities along the class dim: "probs" (normalised, some exact zeros) or "unnorm"
    (positive numbers that do not sum to 1: cross_entropy does not renormalise)."""
    cd = 0 if len(shape) == 1 else 1
    if kind == "probs":
        logits = rng.randn(shape, F64, 2.0)
        logits[rng.rand(shape, F64) < 0.25] = -INF
        # keep one finite logit per row
        first = [slice(None)] * len(shape)
        first[cd] = 0
        logits[tuple(first)] = 0.0
        return torch.softmax(logits, cd).to(dt)
    return (rng.rand(shape, F64) * 1.5).to(dt)


def ce_name(dtype_name, tag, target, weight, reduction, ls, ignore):
    return f"cross_entropy/{dtype_name}/{tag}/{target}/w{int(weight)}/{reduction}/ls{ls:g}/{ignore}"


def cross_entropy_cases():
    cases = []
    rng = Rng(2)

    def add(dtype_name, tag, shape, target_kind, weight, reduction, ls, ignore):
        dt = DTYPES[dtype_name]
        C = n_classes(shape)
        x = rng.randn(shape, dt, 2.0)
        tensors = {"input": x}
        if target_kind == "index":
            t, ignore_index = index_target(rng, shape, ignore)
            diff = ["input"]
        else:
            t, ignore_index = prob_target(rng, shape, dt, target_kind), -100
            diff = ["input", "target"]
        tensors["target"] = t
        if weight:
            tensors["weight"] = (rng.rand([C], F64) + 0.5).to(dt)
            if target_kind != "index":
                diff.append("weight")   # PyTorch has no weight gradient with index targets
        options = {"reduction": reduction, "ignore_index": ignore_index, "label_smoothing": ls}
        fn = (lambda input, target, weight=None, r=reduction, ii=ignore_index, ls=ls:
              F.cross_entropy(input, target, weight=weight, ignore_index=ii, reduction=r, label_smoothing=ls))
        loss_case(cases, ce_name(dtype_name, tag, target_kind, weight, reduction, ls, ignore), "cross_entropy",
                  dtype_name, options, fn, tensors, diff, reduction, rng)

    for dtype_name in DTYPES:
        full = dtype_name == "float64"
        for tag, shape in CLASS_SHAPES:
            C = n_classes(shape)
            # one sample and mean: ignoring it would average over nothing (NaN in PyTorch)
            for reduction in REDUCTIONS:
                single_mean = reduction == "mean" and math.prod(sample_shape(shape)) == 1
                if tag == "NC":  # every option combination (float32: a subset)
                    for weight in (False, True):
                        for ls in ((0.0, 0.1, 0.7, 1.0) if full else (0.0, 0.1)):
                            for ig in (("absent", "present", "custom") if full else ("absent", "present")):
                                add(dtype_name, tag, shape, "index", weight, reduction, ls, ig)
                            for kind in (("probs", "unnorm") if full else ("probs",)):
                                add(dtype_name, tag, shape, kind, weight, reduction, ls, "absent")
                    continue
                # Other shapes: plain; weighted, smoothed, with ignored samples; probabilities.
                add(dtype_name, tag, shape, "index", False, reduction, 0.0, "absent")
                add(dtype_name, tag, shape, "index", True, reduction, 0.1, "absent" if single_mean else "present")
                if C > 2 and full and not single_mean:
                    add(dtype_name, tag, shape, "index", False, reduction, 0.7, "custom")
                add(dtype_name, tag, shape, "probs", full, reduction, 0.0, "absent")
                if full:
                    add(dtype_name, tag, shape, "unnorm", False, reduction, 0.7, "absent")
    write("cross_entropy.json", cases)


def nll_loss_cases():
    cases = []
    rng = Rng(3)
    for dtype_name, dt in DTYPES.items():
        full = dtype_name == "float64"
        for tag, shape in CLASS_SHAPES:
            C = n_classes(shape)
            cd = 0 if len(shape) == 1 else 1
            for reduction in REDUCTIONS:
                single_mean = reduction == "mean" and math.prod(sample_shape(shape)) == 1
                variants = [(False, "absent"), (True, "absent" if single_mean else "present")]
                if tag == "NC":
                    variants += [(False, "present"), (True, "absent")]
                if C > 2 and not single_mean and (full or tag == "NC"):
                    variants.append((True, "custom"))
                for weight, ig in variants:
                    x = torch.log_softmax(rng.randn(shape, F64, 2.0), cd).to(dt)
                    t, ignore_index = index_target(rng, shape, ig)
                    tensors = {"input": x, "target": t}
                    if weight:
                        tensors["weight"] = (rng.rand([C], F64) + 0.5).to(dt)
                    fn = (lambda input, target, weight=None, r=reduction, ii=ignore_index:
                          F.nll_loss(input, target, weight=weight, ignore_index=ii, reduction=r))
                    loss_case(cases, f"nll_loss/{dtype_name}/{tag}/w{int(weight)}/{reduction}/{ig}", "nll_loss",
                              dtype_name, {"reduction": reduction, "ignore_index": ignore_index}, fn, tensors,
                              ["input"], reduction, rng)
    write("nll_loss.json", cases)


def kl_div_cases():
    cases = []
    rng = Rng(4)
    shapes = [("NC", [4, 5]), ("rank1", [6]), ("rank3", [2, 3, 4]), ("N1", [1, 3])]
    for dtype_name, dt in DTYPES.items():
        for tag, shape in (shapes if dtype_name == "float64" else shapes[:2]):
            cd = len(shape) - 1
            for reduction in ("none", "sum", "mean", "batchmean"):
                # target kinds: probabilities with exact zeros (no target gradient: PyTorch gives
                # NaN there, tapegrad -inf), positive probabilities, log-probabilities.
                for kind in ("zeros", "positive", "log"):
                    x = torch.log_softmax(rng.randn(shape, F64, 1.5), cd).to(dt)
                    p = torch.softmax(rng.randn(shape, F64, 1.5), cd)
                    if kind == "zeros":
                        p = p.masked_fill(rng.rand(shape, F64) < 0.3, 0.0)
                    t = (torch.log(p) if kind == "log" else p).to(dt)
                    log_target = kind == "log"
                    diff = ["input"] if kind == "zeros" else ["input", "target"]
                    fn = (lambda input, target, r=reduction, lt=log_target:
                          F.kl_div(input, target, reduction=r, log_target=lt))
                    loss_case(cases, f"kl_div/{dtype_name}/{tag}/{reduction}/{kind}", "kl_div", dtype_name,
                              {"reduction": reduction, "log_target": log_target}, fn, {"input": x, "target": t}, diff,
                              reduction, rng)
    write("kl_div.json", cases)


def bce_cases():
    cases = []
    rng = Rng(5)
    for dtype_name, dt in DTYPES.items():
        full = dtype_name == "float64"
        scales = [("", 2.0)] + [(f"large{s:g}", s) for s in LARGE[dtype_name]]
        for tag, shape in [("NC", [4, 3]), ("rank1", [5]), ("rank3", [2, 3, 4])]:
            C = shape[-1]
            for scale_tag, scale in scales:
                if scale_tag and tag != "NC":
                    continue
                for reduction in REDUCTIONS:
                    for weight in ("none", "class", "full"):
                        for pos_weight in (False, True):
                            if not (full and tag == "NC" and not scale_tag) and (weight, pos_weight) not in (
                                    ("none", False), ("full", True)):
                                continue
                            x = rng.randn(shape, F64, scale)
                            if scale_tag:  # exact extremes and a zero among the random values
                                flat = x.reshape(-1)
                                flat[0], flat[1], flat[2] = scale, -scale, 0.0
                            x = x.to(dt)
                            y = rng.rand(shape, F64)
                            y.reshape(-1)[:2] = torch.tensor([0.0, 1.0], dtype=F64)  # hard labels too
                            y = y.to(dt)
                            tensors = {"input": x, "target": y}
                            if weight != "none":
                                tensors["weight"] = (rng.rand([C] if weight == "class" else shape, F64) + 0.5).to(dt)
                            if pos_weight:
                                tensors["pos_weight"] = (rng.rand([C], F64) * 3 + 0.25).to(dt)
                            fn = (lambda input, target, weight=None, pos_weight=None, r=reduction:
                                  F.binary_cross_entropy_with_logits(input, target, weight=weight, reduction=r,
                                                                     pos_weight=pos_weight))
                            name = (f"binary_cross_entropy_with_logits/{dtype_name}/{tag}{('/' + scale_tag) if scale_tag else ''}"
                                    f"/w_{weight}/pw{int(pos_weight)}/{reduction}")
                            loss_case(cases, name, "binary_cross_entropy_with_logits", dtype_name,
                                      {"reduction": reduction}, fn, tensors, ["input", "target"], reduction, rng)
    write("binary_cross_entropy_with_logits.json", cases)


# ---------------------------------------------------------------- issue 11: regression losses
def regression_loss_cases():
    """mse_loss, l1_loss, smooth_l1_loss (beta 1, 0.5, 2, 0): shapes rank 0-3, every reduction.
    One case per loss puts exact kinks among the random values (d = 0 for l1, |d| = beta for
    smooth_l1), where tapegrad and PyTorch use the same one-sided derivative. smooth_l1 with beta = 0
    never has d = 0: PyTorch 1.13's kernel gives -g there, tapegrad 0 (as l1_loss and PyTorch 2.x)."""
    rng = Rng(6)
    specs = [("mse_loss", None), ("l1_loss", None), ("smooth_l1_loss", 1.0), ("smooth_l1_loss", 0.5),
             ("smooth_l1_loss", 2.0), ("smooth_l1_loss", 0.0)]
    shapes = [("NC", [4, 3]), ("rank1", [5]), ("rank3", [2, 3, 2]), ("rank0", []), ("one", [1])]
    files = {"mse_loss": [], "l1_loss": [], "smooth_l1_loss": []}
    for dtype_name, dt in DTYPES.items():
        for op, beta in specs:
            for tag, shape in (shapes if dtype_name == "float64" else shapes[:2]):
                for kinks in ((False, True) if tag == "NC" and beta != 0.0 else (False,)):
                    for reduction in REDUCTIONS:
                        x = rng.randn(shape, F64, 1.5)
                        t = rng.randn(shape, F64, 1.5)
                        if kinks:  # exact: d = 0 at [0, 0]; d = beta and -beta at [0, 1], [1, 1]
                            x[0, 0], t[0, 0] = 0.75, 0.75
                            if beta is not None:
                                x[0, 1], t[0, 1] = 0.5, 0.5 - beta
                                x[1, 1], t[1, 1] = -0.25, beta - 0.25
                        tensors = {"input": x.to(dt), "target": t.to(dt)}
                        options = {"reduction": reduction}
                        if beta is None:
                            fn = (lambda input, target, r=reduction, f=getattr(F, op): f(input, target, reduction=r))
                            name = f"{op}/{dtype_name}/{tag}/{reduction}"
                        else:
                            options["beta"] = beta
                            fn = (lambda input, target, r=reduction, b=beta:
                                  F.smooth_l1_loss(input, target, reduction=r, beta=b))
                            name = f"{op}/{dtype_name}/{tag}/beta{beta:g}/{reduction}"
                        if kinks:
                            name += "/kinks"
                        loss_case(files[op], name, op, dtype_name, options, fn, tensors, ["input", "target"],
                                  reduction, rng)
    for op, cases in files.items():
        write(f"{op}.json", cases)


# ---------------------------------------------------------------- issue 11: sin, cos, softplus, leaky_relu
def unary_cases():
    """Random inputs of rank 0-3 with a random upstream gradient; softplus around and exactly at its
    threshold (beta x = threshold is the log1p branch in both), leaky_relu with exact zeros (gradient
    negative_slope there in both)."""
    rng = Rng(7)
    files = {"sin": [], "cos": [], "softplus": [], "leaky_relu": []}
    shapes = [("rank1", [6]), ("NC", [3, 4]), ("rank3", [2, 3, 2]), ("rank0", [])]
    variants = {
        "sin": [({}, lambda input: torch.sin(input), 3.0)],
        "cos": [({}, lambda input: torch.cos(input), 3.0)],
        "softplus": [({"beta": b, "threshold": th}, (lambda input, b=b, th=th: F.softplus(input, b, th)), sc)
                     for b, th, sc in ((1.0, 20.0, 8.0), (1.0, 20.0, 30.0), (2.0, 1.0, 1.5), (-1.5, 20.0, 4.0),
                                       (0.5, 2.0, 6.0))],
        "leaky_relu": [({"negative_slope": s}, (lambda input, s=s: F.leaky_relu(input, s)), 2.0)
                       for s in (0.01, 0.2, -0.5)],
    }
    for dtype_name, dt in DTYPES.items():
        for op, vs in variants.items():
            for options, fn, scale in vs:
                for tag, shape in (shapes if dtype_name == "float64" else shapes[:2]):
                    x = rng.randn(shape, F64, scale)
                    if tag == "rank1" and op == "softplus":  # exactly at the threshold, and just above it
                        b, th = options["beta"], options["threshold"]
                        x[0], x[1] = th / b, th / b + 0.5 / abs(b)
                    if tag == "rank1" and op == "leaky_relu":
                        x[0] = 0.0
                    opt_tag = "/".join(f"{k}{v:g}" for k, v in options.items())
                    name = f"{op}/{dtype_name}/{tag}" + (f"/{opt_tag}" if opt_tag else "") + f"/scale{scale:g}"
                    make_case(files[op], name, op, dtype_name, options, fn, {"input": x.to(dt)}, ["input"], "random",
                              rng)
    for op, cases in files.items():
        write(f"{op}.json", cases)


# ---------------------------------------------------------------- issue 11: gather, scatter_add
def gather_cases():
    """torch.gather and torch.scatter_add over ranks 0-4, every dim, indices with repeats, index
    smaller than the input in other dims and larger along dim (gather)."""
    rng = Rng(8)
    gather, scatter = [], []
    shapes = [([5], 0, [7]), ([3, 4], 0, [2, 4]), ([3, 4], 1, [3, 6]), ([3, 4], -1, [2, 2]),
              ([2, 3, 4], 1, [1, 3, 2]), ([2, 3, 4], 2, [2, 2, 5]), ([2, 1, 3, 2], 2, [2, 1, 4, 1]), ([], 0, []),
              ([1], 0, [3])]
    for dtype_name, dt in DTYPES.items():
        for xs, dim, ishape in (shapes if dtype_name == "float64" else shapes[:3]):
            tag = "x{}_dim{}_index{}".format("x".join(map(str, xs)) or "scalar", dim, "x".join(map(str, ishape)) or "scalar")
            size = xs[dim] if xs else 1
            index = rng.randint(0, size, ishape)
            x = rng.randn(xs, F64).to(dt)
            make_case(gather, f"gather/{dtype_name}/{tag}", "gather", dtype_name, {"dim": dim},
                      (lambda input, index, d=dim: torch.gather(input, d, index)), {"input": x, "index": index},
                      ["input"], "random", rng)
            src = rng.randn(ishape, F64).to(dt)
            make_case(scatter, f"scatter_add/{dtype_name}/{tag}", "scatter_add", dtype_name, {"dim": dim},
                      (lambda input, index, src, d=dim: torch.scatter_add(input, d, index, src)),
                      {"input": rng.randn(xs, F64).to(dt), "index": index, "src": src}, ["input", "src"], "random",
                      rng)
    write("gather.json", gather)
    write("scatter_add.json", scatter)


# ---------------------------------------------------------------- issue 11: linspace
def linspace_cases():
    """torch.linspace values (a factory: no gradient): steps 0, 1, 2, odd and even, decreasing,
    equal ends, large and tiny ranges."""
    cases = []
    params = [(0.0, 1.0, 5), (-1.0, 2.0, 4), (1.0, 0.0, 3), (3.0, 3.0, 3), (2.0, 5.0, 1), (0.0, 1.0, 0), (-7.5, 7.5, 2),
              (0.0, 1.0, 11), (-3.0, 10.0, 100), (1e-3, 2e-3, 7), (-1e6, 1e6, 33), (0.1, -0.3, 10)]
    for dtype_name, dt in DTYPES.items():
        for start, end, steps in params:
            out = torch.linspace(start, end, steps, dtype=dt)
            cases.append({"name": f"linspace/{dtype_name}/{start:g}_{end:g}_{steps}", "op": "linspace",
                          "dtype": dtype_name, "options": {"start": start, "end": end, "steps": steps},
                          "output": enc(out)})
    write("linspace.json", cases)


def main():
    torch.manual_seed(0)
    check_lse_formula()
    softmax_family()
    cross_entropy_cases()
    nll_loss_cases()
    kl_div_cases()
    bce_cases()
    regression_loss_cases()
    unary_cases()
    gather_cases()
    linspace_cases()


if __name__ == "__main__":
    main()
