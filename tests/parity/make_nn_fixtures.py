#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes PyTorch reference fixtures for tapegrad's nn layer (tests/parity/test_parity_nn.cpp).

Run by hand with Debian's python3-torch:

    /usr/bin/python3 tests/parity/make_nn_fixtures.py

Fixtures (same tensor encoding as make_fixtures.py):
  nn_modules.json  Linear (with and without bias, 1-D to 3-D inputs) and MLPs (relu, tanh, gelu,
                   gelu tanh-approximation) in float64 and float32: given parameters (state_dict
                   names), an input and an upstream gradient -> output and gradients of
                   <grad_out, output> w.r.t. the input and every parameter.
  nn_attention.json  scaled_dot_product_attention (no mask, bool mask, float mask, causal; batch
                   and head dims), layer_norm (1 and 2 normalized dims, with and without affine),
                   MultiheadAttention (batch_first both ways, key_padding_mask, bool and float
                   attn_mask, weights averaged or per head) and a pre-norm TransformerEncoderLayer
                   (norm_first=True, gelu, batch_first=True, dropout 0), float64 and float32:
                   outputs and gradients w.r.t. inputs and parameters. PyTorch 1.13 has no
                   F.scaled_dot_product_attention: its reference is softmax(q kᵀ scale + mask) v in
                   torch ops. No case has a fully masked row (PyTorch gives NaN there).
  nn_optim.json    5 steps of SGD (momentum; nesterov with weight decay; dampening), Adam
                   (plain; amsgrad with weight decay) and AdamW on a small MLP with a cross-entropy
                   loss on fixed data, float64: initial parameters, data, hyper-parameters, the
                   loss at every step and the parameters after the 5 steps.
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import F32, F64, DTYPES, Rng, enc, write, close  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def mlp(sizes, act, dtype):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]).to(dtype))
        if i + 2 < len(sizes):
            layers.append({"relu": torch.nn.ReLU(), "tanh": torch.nn.Tanh(), "gelu": torch.nn.GELU(),
                           "gelu_tanh": torch.nn.GELU(approximate="tanh")}[act])
    return torch.nn.Sequential(*layers)


def module_case(cases, name, module, x, rng, dtype_name, options):
    x = x.detach().clone().requires_grad_(True)
    out = module(x)
    g = rng.randn(list(out.shape), out.dtype)
    params = dict(module.named_parameters())
    grads = torch.autograd.grad(out, [x] + list(params.values()), g)
    case = {"name": name, "dtype": dtype_name, "options": options,
            "params": {k: enc(v) for k, v in params.items()},
            "input": enc(x), "grad_out": enc(g), "output": enc(out),
            "grads": {"input": enc(grads[0]), **{k: enc(v) for k, v in zip(params.keys(), grads[1:])}}}
    cases.append(case)


def module_cases():
    cases = []
    rng = Rng(1234)
    for dtype_name, dt in DTYPES.items():
        for bias in (True, False):
            for xshape in ([5], [3, 5], [2, 3, 5], [1, 1, 5]):
                lin = torch.nn.Linear(5, 4, bias=bias).to(dt)
                with torch.no_grad():
                    for p in lin.parameters():
                        p.copy_(rng.randn(list(p.shape), dt))
                x = rng.randn(xshape, dt)
                module_case(cases, f"linear/{dtype_name}/bias{int(bias)}/x{'x'.join(map(str, xshape))}", lin, x, rng,
                            dtype_name, {"kind": "linear", "in": 5, "out": 4, "bias": bias})
        for act in ("relu", "tanh", "gelu", "gelu_tanh"):
            for sizes, batch in (([4, 8, 3], 6), ([3, 7, 5, 2], 1), ([6, 2, 9, 4], 11)):
                net = mlp(sizes, act, dt)
                with torch.no_grad():
                    for p in net.parameters():
                        p.copy_(rng.randn(list(p.shape), dt) * 0.7)
                x = rng.randn([batch, sizes[0]], dt)
                module_case(cases, f"mlp/{dtype_name}/{act}/{'-'.join(map(str, sizes))}", net, x, rng, dtype_name,
                            {"kind": "mlp", "sizes": sizes, "activation": act})
    write("nn_modules.json", cases)


OPTIMISERS = [
    ("sgd_momentum", torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    ("sgd_nesterov_wd", torch.optim.SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
    ("sgd_dampening", torch.optim.SGD, {"lr": 0.1, "momentum": 0.5, "dampening": 0.3}),
    ("adam", torch.optim.Adam, {"lr": 0.01}),
    ("adam_amsgrad_wd", torch.optim.Adam, {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1,
                                           "amsgrad": True}),
    ("adamw", torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.05}),
    ("adamw_amsgrad", torch.optim.AdamW, {"lr": 0.03, "betas": (0.85, 0.95), "weight_decay": 0.2, "amsgrad": True}),
]


def optim_cases():
    cases = []
    rng = Rng(99)
    for tag, cls, hp in OPTIMISERS:
        net = mlp([3, 5, 4], "tanh", F64)
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(rng.randn(list(p.shape), F64) * 0.8)
        initial = {k: enc(v) for k, v in net.named_parameters()}
        x = rng.randn([6, 3], F64)
        y = rng.randint(0, 4, [6])
        opt = cls(net.parameters(), **hp)
        losses = []
        for _ in range(5):
            opt.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        options = {"optimizer": cls.__name__, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in hp.items()}}
        cases.append({"name": f"optim/{tag}", "dtype": "float64", "options": options, "sizes": [3, 5, 4],
                      "activation": "tanh", "params": initial, "input": enc(x), "target": enc(y),
                      "losses": losses, "final": {k: enc(v) for k, v in net.named_parameters()}})
    write("nn_optim.json", cases)


def grads_case(name, dtype_name, options, tensors, diff, fn, rng, params=None, module=None):
    """tensors: dict of inputs; diff: names to differentiate; params: dict name -> nn.Parameter.

    float32 cases store the exact answer for their (float32) inputs: PyTorch recomputes the case
    in float64 (module converted with .double(), inputs upcast exactly), so the C++ test measures
    tapegrad's float32 rounding alone, not the sum of two float32 roundings."""
    case = _grads_case(name, dtype_name, options, tensors, diff, fn, rng, params)
    if dtype_name == "float32":
        t64 = {k: (v.double() if v.is_floating_point() else v) for k, v in tensors.items()}
        if module is not None:
            module.double()
            params = dict(module.named_parameters())
        g64 = torch.tensor([float(x) for x in case["grad_out"]["values"]], dtype=F64).reshape(case["grad_out"]["shape"])
        ref = _grads_case(name, "float32", options, t64, diff, fn, None, params, g=g64)
        for key in ("output", "weights"):
            if key in ref:
                case[key]["values"] = ref[key]["values"]
        for k in case["grads"]:
            case["grads"][k]["values"] = ref["grads"][k]["values"]
        if module is not None:
            module.float()
    return case


def _grads_case(name, dtype_name, options, tensors, diff, fn, rng, params=None, g=None):
    leaves = {k: (v.detach().clone().requires_grad_(k in diff) if v.is_floating_point() else v)
              for k, v in tensors.items()}
    out = fn(**leaves)
    if isinstance(out, tuple):
        out, extra = out
    else:
        extra = None
    if g is None:
        g = rng.randn(list(out.shape), out.dtype)
    wrt = [leaves[k] for k in diff] + (list(params.values()) if params else [])
    grads = torch.autograd.grad(out, wrt, g)
    names = list(diff) + (list(params.keys()) if params else [])
    case = {"name": name, "dtype": dtype_name, "options": options}
    for k, v in tensors.items():
        case[k] = enc(v)
    if params:
        case["params"] = {k: enc(v) for k, v in params.items()}
    case["grad_out"] = enc(g)
    case["output"] = enc(out)
    if extra is not None:
        case["weights"] = enc(extra)
    case["grads"] = {k: enc(v) for k, v in zip(names, grads)}
    for v in [out] + list(grads):
        assert not bool(torch.isnan(v).any()), name
    return case


def sdpa_ref(q, k, v, mask=None, causal=False, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ k.transpose(-2, -1) * scale
    L, S = q.shape[-2], k.shape[-2]
    if causal:
        s = s.masked_fill(torch.ones(L, S, dtype=torch.bool).triu(1), float("-inf"))
    elif mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    return torch.softmax(s, -1) @ v


def attention_cases():
    cases = []
    rng = Rng(777)
    for dtype_name, dt in DTYPES.items():
        # scaled_dot_product_attention
        for lead, L, S, E, Ev in (([], 4, 4, 3, 3), ([2], 3, 5, 4, 2), ([2, 3], 4, 4, 2, 3), ([1, 2], 1, 3, 4, 4)):
            for kind in ("none", "bool", "float", "causal", "scale"):
                if kind == "causal" and L != S:
                    continue
                q, k, v = rng.randn(lead + [L, E], dt), rng.randn(lead + [S, E], dt), rng.randn(lead + [S, Ev], dt)
                t = {"q": q, "k": k, "v": v}
                opts = {"kind": kind}
                if kind == "bool":
                    m = rng.rand([L, S], F64) > 0.4
                    m[:, 0] = True  # every query sees at least one key
                    t["attn_mask"] = m
                elif kind == "float":
                    t["attn_mask"] = rng.randn([L, S], dt)
                elif kind == "scale":
                    opts["scale"] = 0.3
                fn = (lambda q, k, v, attn_mask=None, kind=kind:
                      sdpa_ref(q, k, v, attn_mask, kind == "causal", 0.3 if kind == "scale" else None))
                cases.append(grads_case(f"sdpa/{dtype_name}/{'x'.join(map(str, lead + [L, S, E, Ev]))}/{kind}", dtype_name,
                                        opts, t, ["q", "k", "v"], fn, rng))
        # layer_norm
        for shape, ns, affine in (([3, 5], [5], True), ([2, 3, 4], [4], False), ([2, 3, 4], [3, 4], True), ([7], [7], True)):
            x = rng.randn(shape, dt) * 2 + 0.5
            t = {"input": x}
            diff = ["input"]
            if affine:
                t["weight"] = rng.randn(ns, dt)
                t["bias"] = rng.randn(ns, dt)
                diff += ["weight", "bias"]
            fn = (lambda input, weight=None, bias=None, ns=ns: F.layer_norm(input, ns, weight, bias, 1e-5))
            cases.append(grads_case(f"layer_norm/{dtype_name}/{'x'.join(map(str, shape))}/ns{len(ns)}/affine{int(affine)}",
                                    dtype_name, {"normalized_shape": ns, "eps": 1e-5}, t, diff, fn, rng))
        # MultiheadAttention
        for bf in (False, True):
            for masks in ("none", "kpm", "bool", "float", "both"):
                for avg in (True, False):
                    E, H, B, L, S = 6, 2, 2, 3, 4
                    mha = torch.nn.MultiheadAttention(E, H, batch_first=bf).to(dt)
                    with torch.no_grad():
                        for p in mha.parameters():
                            p.copy_(rng.randn(list(p.shape), dt) * 0.5)
                    shape_q = [B, L, E] if bf else [L, B, E]
                    shape_k = [B, S, E] if bf else [S, B, E]
                    t = {"query": rng.randn(shape_q, dt), "key": rng.randn(shape_k, dt), "value": rng.randn(shape_k, dt)}
                    if masks in ("kpm", "both"):
                        kpm = rng.rand([B, S], F64) > 0.6
                        kpm[:, 0] = False
                        t["key_padding_mask"] = kpm
                    if masks in ("bool", "both"):
                        am = rng.rand([L, S], F64) > 0.6
                        am[:, 0] = False
                        t["attn_mask"] = am
                    if masks == "float":
                        t["attn_mask"] = rng.randn([L, S], dt)
                    params = dict(mha.named_parameters())

                    def fn(query, key, value, key_padding_mask=None, attn_mask=None, mha=mha, avg=avg):
                        out, w = mha(query, key, value, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                                     need_weights=True, average_attn_weights=avg)
                        return out, w
                    cases.append(grads_case(f"mha/{dtype_name}/bf{int(bf)}/{masks}/avg{int(avg)}", dtype_name,
                                            {"embed_dim": E, "num_heads": H, "batch_first": bf, "average": avg},
                                            t, ["query", "key", "value"], fn, rng, params, module=mha))
        # TransformerEncoderLayer, pre-norm
        for causal in (False, True):
            E, H, FF, B, T = 8, 2, 16, 2, 5
            layer = torch.nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, activation="gelu", batch_first=True,
                                                     norm_first=True).to(dt)
            with torch.no_grad():
                for p in layer.parameters():
                    p.add_(rng.randn(list(p.shape), dt) * 0.1)
            params = dict(layer.named_parameters())
            mask = torch.ones(T, T, dtype=torch.bool).triu(1) if causal else None
            fn = (lambda input, layer=layer, mask=mask: layer(input, src_mask=mask))
            layer.eval()  # no dropout; PyTorch's fast path needs grad off, so the slow path runs here
            cases.append(grads_case(f"transformer_block/{dtype_name}/causal{int(causal)}", dtype_name,
                                    {"embed_dim": E, "num_heads": H, "ffn_dim": FF, "causal": causal},
                                    {"input": rng.randn([B, T, E], dt)}, ["input"], fn, rng, params, module=layer))
    write("nn_attention.json", cases)


if __name__ == "__main__":
    torch.manual_seed(0)
    module_cases()
    optim_cases()
    attention_cases()
