#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Loads safetensors files written by tapegrad into torch.nn modules and compares outputs.

CTest runs it as `safetensors.torch_load` (exit code 77 = skipped when this interpreter has no torch):

    /usr/bin/python3 tests/safetensors/torch_load.py ./build/tapegrad_tests

It runs the hidden Catch2 test "[.safetensors-interop]", which writes, with nn::save_safetensors,
an MLP, a LayerNorm + Linear, a TransformerBlock (float32 and float64), an Embedding, and a plain
tensor map (F32, F64, I64, BOOL, a scalar, an empty tensor, __metadata__), with inputs and
tapegrad's outputs, into a temporary directory. Each module file is then loaded the README's way:

    state = safetensors.torch.load_file("model.safetensors")
    net.load_state_dict(state)                   # strict=True, the default

into the equivalent torch.nn module, and torch's output must equal tapegrad's (Embedding exactly;
otherwise to 1e-5 relative in float32 and 1e-10 in float64, because the two libraries add the
products of their matrix multiplications in different orders). load_state_dict converts dtypes
silently, so the script also requires every loaded tensor to have the module's dtype.

`safetensors.torch.load_file` is used when the safetensors package is importable; otherwise the
independent reader st_format.py (same rules as the reference; see its docstring), and the script
says which. Every file is also checked against the reference's reading rules with st_format.parse
(header length, UTF-8 JSON, entries tiling the data area exactly), and the script reports whether
tapegrad's bytes equal what the reference writer would produce for the same tensors (tensor order,
compact JSON, space padding to 8 bytes).
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import torch
except ImportError:
    print("torch_load: no torch in this interpreter; skipped")
    sys.exit(77)

import st_format  # noqa: E402


def tensor(t):
    dtype = getattr(torch, t["dtype"])
    if dtype == torch.int64:
        return torch.tensor([int(v) for v in t["values"]], dtype=dtype).reshape(t["shape"])
    return torch.tensor([float(v) for v in t["values"]], dtype=dtype).reshape(t["shape"])


def build(case):
    dtype = getattr(torch, case["dtype"])
    kind = case["kind"]
    if kind == "mlp":
        sizes = case["sizes"]
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
            if i + 2 < len(sizes):
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers).to(dtype), "torch.nn.Sequential(Linear, ReLU, ...)"
    if kind == "layernorm_linear":
        n = case["normalized_shape"]
        net = torch.nn.Sequential(torch.nn.LayerNorm(n, eps=case["eps"]), torch.nn.Linear(n[-1], case["out_features"]))
        return net.to(dtype), "torch.nn.Sequential(LayerNorm, Linear)"
    if kind == "transformer_block":
        net = torch.nn.TransformerEncoderLayer(case["embed_dim"], case["num_heads"], case["ffn_dim"], dropout=0.0,
                                               activation="gelu", batch_first=True, norm_first=True)
        return net.to(dtype), "torch.nn.TransformerEncoderLayer(norm_first, gelu, batch_first)"
    if kind == "embedding":
        return torch.nn.Embedding(case["num_embeddings"], case["embedding_dim"]).to(dtype), "torch.nn.Embedding"
    raise SystemExit(f"torch_load: unknown case kind {kind!r}")


def fail(msg):
    print(f"torch_load: FAILED: {msg}")
    sys.exit(1)


def check_layout(path):
    """The reference's reading rules, and whether the bytes equal the reference writer's."""
    data = open(path, "rb").read()
    try:
        st_format.parse(data)
    except st_format.SafetensorsError as e:
        fail(f"{os.path.basename(path)} breaks the safetensors rules: {e}")
    tensors, metadata = st_format.read_file(path)
    return st_format.serialize(tensors, metadata) == data


def main():
    binary = sys.argv[1]
    which, _, load_file = st_format.interop()
    print(f"torch_load: reading with {which}")
    identical = []
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, TAPEGRAD_SAFETENSORS_INTEROP_DIR=d)
        subprocess.run([binary, "[.safetensors-interop]"], check=True, env=env, stdout=subprocess.DEVNULL)
        cases = json.load(open(os.path.join(d, "cases.json")))
        if not cases:
            fail("no cases written")
        for case in cases:
            path = os.path.join(d, case["file"])
            identical.append((case["file"], check_layout(path)))
            state = load_file(path)
            if case["kind"] == "plain":
                _, metadata = st_format.read_file(path)
                try:  # the real package's way, when it is there
                    from safetensors import safe_open
                    with safe_open(path, framework="pt") as f:
                        metadata = f.metadata()
                except ImportError:
                    pass
                if metadata != case["metadata"]:
                    fail(f"{case['file']}: metadata {metadata} vs {case['metadata']}")
                if set(state) != set(case["tensors"]):
                    fail(f"{case['file']}: names {sorted(state)} vs {sorted(case['tensors'])}")
                for k, t in case["tensors"].items():
                    want = tensor(t)
                    got = state[k]
                    if got.dtype != want.dtype or got.shape != want.shape:
                        fail(f"{case['file']}: {k} is {got.dtype} {list(got.shape)}, tapegrad wrote {want.dtype} {list(want.shape)}")
                    same = torch.equal(got, want) and (got.dtype == torch.bool or got.numel() == 0 or bool(
                        (torch.signbit(got.double()) == torch.signbit(want.double())).all()))
                    if not same:
                        fail(f"{case['file']}: {k} = {got} vs tapegrad's {want}")
                print(f"torch_load: {case['file']}: {len(state)} tensors (F32, F64, I64, BOOL, scalar, empty) "
                      f"and __metadata__ read back exactly")
                continue
            net, what = build(case)
            own = net.state_dict()
            if set(state) != set(own):
                fail(f"{case['file']}: names {sorted(state)} vs {what}'s {sorted(own)}")
            for k, t in state.items():
                if t.dtype != own[k].dtype or t.shape != own[k].shape:
                    fail(f"{case['file']}: {k} is {t.dtype} {list(t.shape)}, {what} has {own[k].dtype} {list(own[k].shape)}")
            net.load_state_dict(state, strict=True)
            net.eval()
            with torch.no_grad():
                out = net(tensor(case["input"]))
            expected = tensor(case["output"])
            rtol = 0.0 if case["kind"] == "embedding" else (1e-10 if case["dtype"] == "float64" else 1e-5)
            if out.dtype != expected.dtype or not torch.allclose(out, expected, rtol=rtol, atol=rtol):
                fail(f"{case['file']}: {what} output differs from tapegrad's\n{out}\n{expected}")
            print(f"torch_load: {case['file']}: {what} loads with load_state_dict(strict=True); output matches "
                  f"tapegrad's (max |diff| {float((out - expected).abs().max()):.3g})")
    same = [f for f, ok in identical if ok]
    print(f"torch_load: {len(same)} of {len(identical)} files are byte-identical to the reference writer's output "
          f"for the same tensors" + ("" if len(same) == len(identical) else
                                     f" (differ: {[f for f, ok in identical if not ok]}; not required by the format)"))


if __name__ == "__main__":
    main()
