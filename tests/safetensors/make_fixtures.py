#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the safetensors fixtures for tests/safetensors/test_safetensors_interop.cpp.

Run by hand, from anywhere, with the interpreter that has Debian's python3-torch:

    /usr/bin/python3 tests/safetensors/make_fixtures.py

CI never runs it: the files under tests/safetensors/fixtures/ are committed and the C++ test only
reads them. The files are written with safetensors.torch.save_file when the `safetensors` package
is importable, otherwise with st_format.py (an independent writer following the reference's
rules; see its docstring); each expectation file says which ("writer"). Inputs come from seeded
torch.Generators, so regenerating with the same PyTorch and writer is byte-for-byte identical.

For every <name>.safetensors there is a <name>.json the C++ test checks against:
    {"file": "<name>.safetensors", "writer": "...", "header_length": N, "file_size": bytes,
     "metadata": {...} or null,
     "tensors": {"<key>": {"dtype": "F16", "shape": [..], "tapegrad_dtype": "float32",
                           "values": [...], "bits": ["0x3c00..", ...]}, ...},
     "module": {"kind": "mlp" | "layernorm_linear" | "embedding", ...},      (module files only)
     "input": T, "output": T}                                                (module files only)
`values` are what tapegrad must hold after loading: floats as repr of the exact double ("inf",
"-inf", "nan" for non-finite numbers), int64 as JSON integers, bool as true/false. `bits` are the
IEEE bit patterns of the loaded value (float32 for F32, F16 and BF16, which tapegrad widens to
float32; float64 for F64), so NaN and -0.0 are checked too. T = {"dtype", "shape", "values"} as in
tests/parity (make_fixtures.py). `output` is torch's forward of the loaded module on `input`.

The F16/BF16 widening is checked here twice, independently of tapegrad: torch's .float() and a
decoding of the raw bits (struct's IEEE half "e" format for F16; bits << 16 for BF16) must agree.
"""
import json
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures")
sys.path.insert(0, HERE)
import st_format  # noqa: E402

try:
    import torch
except ImportError:
    sys.exit("make_fixtures: no torch in this interpreter; run it with /usr/bin/python3 (Debian's python3-torch)")

F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
WRITER, SAVE_FILE, _ = st_format.interop()
TAPEGRAD_DTYPE = {F16: "float32", BF16: "float32", F32: "float32", F64: "float64",
                  torch.int64: "int64", torch.bool: "bool"}
ST_DTYPE = {F16: "F16", BF16: "BF16", F32: "F32", F64: "F64", torch.int64: "I64", torch.bool: "BOOL"}


def enc_float(v):
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def enc(t):
    """tests/parity's tensor encoding."""
    t = t.detach()
    if t.dtype == torch.int64:
        values = [int(v) for v in t.reshape(-1).tolist()]
    else:
        values = [enc_float(v) for v in t.double().reshape(-1).tolist()]
    return {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "values": values}


def widened(t):
    """What tapegrad must hold for a stored tensor t: (values, bits or None)."""
    flat = t.detach().reshape(-1)
    if t.dtype == torch.int64:
        return [int(v) for v in flat.tolist()], None
    if t.dtype == torch.bool:
        return [bool(v) for v in flat.tolist()], None
    if t.dtype == F64:
        bits = flat.view(torch.int64).tolist()
        return [enc_float(v) for v in flat.tolist()], [f"0x{b & (2**64 - 1):016x}" for b in bits]
    wide = flat.float()
    bits = [b & 0xFFFFFFFF for b in wide.view(torch.int32).tolist()]
    # Independent decoding of the stored bits, which must give the same float32 bit patterns.
    if t.dtype == F16:
        raw = [b & 0xFFFF for b in flat.view(torch.int16).tolist()]
        mine = [struct.unpack("<I", struct.pack("<f", struct.unpack("<e", struct.pack("<H", h))[0]))[0] for h in raw]
        if any(math.isnan(struct.unpack("<e", struct.pack("<H", h))[0]) for h in raw):
            # struct goes through a double and may change a NaN's payload; compare NaN by class.
            mine = [m if not math.isnan(struct.unpack("<f", struct.pack("<I", m))[0]) else b
                    for m, b in zip(mine, bits)]
        assert mine == bits, (mine, bits)
    elif t.dtype == BF16:
        raw = [b & 0xFFFF for b in flat.view(torch.int16).tolist()]
        assert [h << 16 for h in raw] == bits, (raw, bits)
    return [enc_float(v) for v in wide.double().tolist()], [f"0x{b:08x}" for b in bits]


def write_fixture(name, tensors, metadata=None, extra=None):
    path = os.path.join(OUT_DIR, name + ".safetensors")
    SAVE_FILE(tensors, path, metadata=metadata)
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    # The file must read back (with our reader, whichever wrote it) to the same bits.
    back, meta_back = st_format.read_file(path)
    assert meta_back == metadata and set(back) == set(tensors), name
    for k, t in tensors.items():
        assert back[k].dtype == t.dtype and back[k].shape == t.shape, k
        assert st_format._tensor_bytes(k, back[k]) == st_format._tensor_bytes(k, t), k
    spec = {}
    for k in sorted(tensors):
        t = tensors[k]
        values, bits = widened(t)
        spec[k] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "tapegrad_dtype": TAPEGRAD_DTYPE[t.dtype],
                   "values": values}
        if bits is not None:
            spec[k]["bits"] = bits
    case = {"file": name + ".safetensors", "writer": WRITER, "header_length": n, "file_size": len(data),
            "metadata": metadata, "tensors": spec}
    case.update(extra or {})
    with open(os.path.join(OUT_DIR, name + ".json"), "w") as f:
        json.dump(case, f, indent=1)
        f.write("\n")
    print(f"make_fixtures: {name}.safetensors ({len(data)} bytes), {name}.json")


def set_params(module, gen, scale):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=F64) * scale)


def module_fixture(name, module, x, kind):
    module.eval()
    with torch.no_grad():
        out = module(x)
        # The float32 reference must be accurate: recompute in float64 from the same parameters.
        if x.dtype == F32 or (kind["kind"] == "embedding" and out.dtype == F32):
            ref = module.to(F64)(x if kind["kind"] == "embedding" else x.double())
            module.to(F32)
            err = float(((out.double() - ref).abs() / ref.abs().clamp(min=1e-1)).max())
            assert err < 1e-6, (name, err)
    write_fixture(name, {k: v.detach().clone() for k, v in module.state_dict().items()},
                  extra={"module": kind, "input": enc(x), "output": enc(out)})


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    gen = torch.Generator().manual_seed(12)

    for dt, tag in ((F32, "f32"), (F64, "f64")):
        mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).to(dt)
        set_params(mlp, gen, 0.6)
        x = torch.randn(5, 4, generator=gen, dtype=F64).to(dt)
        module_fixture(f"mlp_{tag}", mlp, x, {"kind": "mlp", "sizes": [4, 8, 3], "activation": "relu",
                                              "dtype": str(dt).replace("torch.", "")})

        ln = torch.nn.Sequential(torch.nn.LayerNorm(6), torch.nn.Linear(6, 4)).to(dt)
        set_params(ln, gen, 0.8)  # LayerNorm's weight and bias too, not ones and zeros
        x = torch.randn(2, 3, 6, generator=gen, dtype=F64).to(dt) * 2 + 0.5
        module_fixture(f"layernorm_linear_{tag}", ln, x, {"kind": "layernorm_linear", "normalized_shape": [6],
                                                          "eps": 1e-5, "out_features": 4,
                                                          "dtype": str(dt).replace("torch.", "")})

    emb = torch.nn.Embedding(10, 4).to(F32)
    set_params(emb, gen, 1.0)
    ids = torch.tensor([[1, 3, 0], [9, 3, 7]], dtype=torch.int64)
    module_fixture("embedding_f32", emb, ids, {"kind": "embedding", "num_embeddings": 10, "embedding_dim": 4,
                                               "dtype": "float32"})

    # F16: rounding (0.1, 1/3; ties to even at 2049 -> 2048, 2051 -> 2052; 65519.99 -> 65504, the
    # largest half; 65520 -> inf), subnormals (2^-24 the smallest, 3 * 2^-24, 2^-14 - 2^-24 the
    # largest; 2^-25 ties to 0; 1.5 * 2^-24 ties to 2 * 2^-24), 2^-14 the smallest normal, signed
    # zeros, infinities and a quiet NaN (0x7e00 widens to 0x7fc00000).
    half_src = [0.0, -0.0, 1.0, -2.5, 0.1, 1 / 3, 2049.0, 2051.0, 65504.0, 65519.99, 65520.0, -65504.0,
                2.0 ** -14, 2.0 ** -24, 3 * 2.0 ** -24, 2.0 ** -14 - 2.0 ** -24, 2.0 ** -25, 1.5 * 2.0 ** -24,
                math.inf, -math.inf, math.nan, -7.0 * 2.0 ** -20, 1000.3, -0.000123]
    h = torch.tensor(half_src, dtype=F64).to(F16).reshape(4, 6)
    # BF16: 8 significant bits: ties to even (257 -> 256, 259 -> 260), 1/3 and 0.1 round, the largest
    # finite bf16 (0x7f7f), float32's max rounds up to inf, 2^-126 the smallest normal, 2^-133 the
    # smallest subnormal, 2^-127 a subnormal, zeros, infinities, a quiet NaN.
    bf_src = [0.0, -0.0, 1.0, -1.0, 1 / 3, 0.1, 257.0, 259.0, 3.3895313892515355e38, 3.4028234663852886e38,
              2.0 ** -126, 2.0 ** -133, 2.0 ** -127, math.inf, -math.inf, math.nan, -1e30, 12345.678]
    b = torch.tensor(bf_src, dtype=F64).to(F32).to(BF16).reshape(3, 6)
    write_fixture("half", {"h": h, "h_scalar": torch.tensor(-0.5, dtype=F16)},
                  extra={"source_values": [enc_float(v) for v in half_src]})
    write_fixture("bfloat16", {"b": b, "b_row": torch.tensor([1.5, -3.0], dtype=BF16)},
                  extra={"source_values": [enc_float(v) for v in bf_src]})

    ids = torch.tensor([[0, -1, 2 ** 62], [-2 ** 63, 2 ** 63 - 1, 123456789012345]], dtype=torch.int64)
    mask = torch.tensor([[True, False], [False, True], [True, True]])
    write_fixture("int64_bool", {"ids": ids, "mask": mask, "x": torch.tensor([0.5, -1.25, 3.0], dtype=F32)})

    # A scalar (shape []), and empty tensors, whose data_offsets are [k, k] at the same place.
    write_fixture("scalar_empty", {"scalar": torch.tensor(3.25, dtype=F32), "scalar_f64": torch.tensor(math.pi, dtype=F64),
                                   "empty": torch.zeros(0, 3, dtype=F32), "empty_i64": torch.zeros(0, dtype=torch.int64),
                                   "empty_f32b": torch.zeros(2, 0, dtype=F32)})

    write_fixture("metadata", {"weight": torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F32)},
                  metadata={"format": "pt", "producer": "tests/safetensors/make_fixtures.py",
                            "note": "non-ASCII: \u00fcn\u00efc\u00f6de \u2713", "empty": ""})


if __name__ == "__main__":
    main()
