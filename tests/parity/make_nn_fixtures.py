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
  nn_optim.json    5 steps of SGD (momentum; nesterov with weight decay; dampening), Adam
                   (plain; amsgrad with weight decay) and AdamW on a small MLP with a cross-entropy
                   loss on fixed data, float64: initial parameters, data, hyper-parameters, the
                   loss at every step and the parameters after the 5 steps.
"""
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


if __name__ == "__main__":
    torch.manual_seed(0)
    module_cases()
    optim_cases()
