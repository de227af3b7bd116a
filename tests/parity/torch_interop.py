#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Loads tapegrad checkpoints into the equivalent torch.nn modules and compares outputs.

CTest runs it as `parity.torch_interop` (exit code 77 = skipped when this interpreter has no torch):

    /usr/bin/python3 tests/parity/torch_interop.py ./build/tapegrad_tests

It runs the hidden Catch2 test "[.interop]", which writes checkpoints (an MLP in float64 and in
float32, and a TransformerBlock with and without a causal mask in both dtypes) with an input and
tapegrad's output into a temporary directory, then loads each one with
the README's few lines of Python and checks that torch gives the same output.
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import torch
except ImportError:
    print("torch_interop: no torch in this interpreter; skipped")
    sys.exit(77)


def load_state(path):
    # The README's snippet: a tapegrad checkpoint as a torch state_dict.
    ckpt = json.load(open(path))
    return {k: torch.tensor([float(v) for v in t["values"]], dtype=getattr(torch, t["dtype"])).reshape(t["shape"])
            for k, t in ckpt["model"].items()}


def tensor(t):
    return torch.tensor([float(v) for v in t["values"]], dtype=getattr(torch, t["dtype"])).reshape(t["shape"])


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, TAPEGRAD_INTEROP_DIR=d)
        subprocess.run([binary, "[.interop]"], check=True, env=env, stdout=subprocess.DEVNULL)
        cases = json.load(open(os.path.join(d, "cases.json")))
        assert cases, "no interop cases written"
        for case in cases:
            dtype = getattr(torch, case["dtype"])
            if case.get("kind") == "transformer_block":
                # The README's attention-block lines: TransformerBlock is a pre-norm
                # TransformerEncoderLayer with GELU and batch-first tensors.
                net = torch.nn.TransformerEncoderLayer(case["embed_dim"], case["num_heads"], case["ffn_dim"],
                                                       dropout=0.0, activation="gelu", batch_first=True,
                                                       norm_first=True).to(dtype)
                net.load_state_dict(load_state(os.path.join(d, case["checkpoint"])))
                net.eval()
                T = case["input"]["shape"][1]
                mask = torch.ones(T, T, dtype=torch.bool).triu(1) if case["causal"] else None
                with torch.no_grad():
                    out = net(tensor(case["input"]), src_mask=mask)
                what = "torch.nn.TransformerEncoderLayer" + (" (causal mask)" if case["causal"] else "")
            else:
                sizes = case["sizes"]
                layers = []
                for i in range(len(sizes) - 1):
                    layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
                    if i + 2 < len(sizes):
                        layers.append(torch.nn.ReLU())
                net = torch.nn.Sequential(*layers).to(dtype)
                net.load_state_dict(load_state(os.path.join(d, case["checkpoint"])))
                with torch.no_grad():
                    out = net(tensor(case["input"]))
                what = "torch.nn.Sequential"
            expected = tensor(case["output"])
            rtol = 1e-10 if case["dtype"] == "float64" else 1e-5
            if not torch.allclose(out, expected, rtol=rtol, atol=rtol):
                print(f"torch_interop: {case['checkpoint']}: torch output differs from tapegrad's\n{out}\n{expected}")
                sys.exit(1)
            print(f"torch_interop: {case['checkpoint']}: {what} output matches tapegrad "
                  f"(max |diff| {float((out - expected).abs().max()):.3g})")


if __name__ == "__main__":
    main()
