#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A small, independent reader and writer of the safetensors format, in plain Python.

Used by make_fixtures.py and torch_load.py only when the real `safetensors` package is not
installed (Debian 12 has no python3-safetensors, and these machines have no network for pip):
`interop()` returns the real safetensors.torch save_file/load_file when importable and these
otherwise, with a line saying which one it is. The functions have the same names and arguments as
safetensors.torch's: save_file(tensors, filename, metadata=None) and load_file(filename).

The rules, as huggingface/safetensors implements them (read in safetensors/src/tensor.rs at commit
000a16f45cff, and bindings/python/py_src/safetensors/torch.py):

  file   = N (8 bytes, u64 little-endian) + header (N bytes of UTF-8 JSON) + data
  header = {"__metadata__": {str: str}   (only when metadata is given; first; Metadata::serialize)
            "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
           written compactly (serde_json::to_string: no spaces), keys of an entry in the order
           dtype, shape, data_offsets (the field order of struct TensorInfo), then padded with
           spaces (b' ') so that N is a multiple of 8 (`prepare`: "Force alignment to 8 bytes"),
           so the data starts 8-byte aligned.
  order  = `prepare` sorts the tensors by dtype descending, then by name ascending (byte order):
           `right.dtype().cmp(&left.dtype()).then(lname.cmp(rname))`, where Dtype's derived Ord
           is its declaration order, "in increasing alignment order" (BOOL, U8, I8, F8_E5M2,
           F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64). With every tensor's size a
           multiple of its element size, each tensor then starts aligned to its element size.
  data   = each tensor's raw little-endian, row-major (C order) bytes, back to back from offset 0;
           data_offsets are relative to the first byte after the header.
  reading (SafeTensors::read_metadata and Metadata::validate): N <= 100_000_000 and 8 + N <= file
           size; the header is UTF-8 JSON; entries sorted by data_offsets must tile the data area
           exactly (the first begins at 0, each begins where the previous ended, end - begin ==
           numel * itemsize, and the last end + 8 + N == file size).

Two things differ on purpose: the reference writes "__metadata__" in HashMap order (unspecified;
we sort the keys, so our output is reproducible), and this reader also rejects a header that does
not start with '{' and duplicate keys (the reference's later versions reject the first; serde
rejects duplicate fields of a struct, Python's json would silently keep the last one).
"""
import json
import struct
import sys

MAX_HEADER_SIZE = 100_000_000

# Dtype declaration order in tensor.rs (increasing alignment); the writer sorts by it, descending.
_DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32",
                "F32", "F64", "I64", "U64"]
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
             "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}


def _torch():
    import torch
    return torch


def _torch_dtypes():
    torch = _torch()
    return {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
            "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
            "U8": torch.uint8, "BOOL": torch.bool}


class SafetensorsError(ValueError):
    pass


def _tensor_bytes(name, t):
    torch = _torch()
    if sys.byteorder != "little":
        raise SafetensorsError("st_format: only little-endian hosts are supported")
    if t.layout != torch.strided or not t.is_contiguous():
        raise SafetensorsError(f"st_format: tensor '{name}' must be dense and contiguous (call .contiguous())")
    t = t.detach().cpu()
    if t.numel() == 0:
        return b""
    # A same-size integer view gives the raw bits for every dtype (numpy has no bfloat16).
    same_size = {2: torch.int16, 4: torch.int32, 8: torch.int64, 1: torch.uint8}[t.element_size()]
    if t.dtype == torch.bool:
        return t.to(torch.uint8).reshape(-1).numpy().tobytes()
    return t.view(same_size).reshape(-1).numpy().tobytes()


def serialize(tensors, metadata=None):
    """The file's bytes for {name: torch.Tensor}, as safetensors.torch.save would produce them."""
    names = {v: k for k, v in _torch_dtypes().items()}
    entries = []
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise SafetensorsError(f"st_format: tensor names must be str, got {name!r}")
        if t.dtype not in names:
            raise SafetensorsError(f"st_format: tensor '{name}' has unsupported dtype {t.dtype}")
        entries.append((name, names[t.dtype], list(t.shape), _tensor_bytes(name, t)))
    entries.sort(key=lambda e: (-_DTYPE_ORDER.index(e[1]), e[0]))
    header = {}
    if metadata is not None:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise SafetensorsError(f"st_format: metadata must map str to str, got {k!r}: {v!r}")
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    offset = 0
    for name, dtype, shape, data in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(e[3] for e in entries)


def save_file(tensors, filename, metadata=None):
    data = serialize(tensors, metadata)
    with open(filename, "wb") as f:
        f.write(data)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise SafetensorsError(f"st_format: duplicate keys {dup} in the header")
    return dict(pairs)


def parse(buffer):
    """(header entries {name: (dtype, shape, begin, end)}, metadata or None, data start) for a file's bytes."""
    if len(buffer) < 8:
        raise SafetensorsError(f"st_format: {len(buffer)} bytes is too small for the 8-byte header length")
    (n,) = struct.unpack("<Q", buffer[:8])
    if n > MAX_HEADER_SIZE:
        raise SafetensorsError(f"st_format: header length {n} exceeds {MAX_HEADER_SIZE}")
    if 8 + n > len(buffer):
        raise SafetensorsError(f"st_format: header length {n} runs past the end of the {len(buffer)}-byte file")
    try:
        text = bytes(buffer[8:8 + n]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise SafetensorsError(f"st_format: header is not UTF-8 ({e})")
    if not text.startswith("{"):
        raise SafetensorsError("st_format: header does not start with '{'")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise SafetensorsError(f"st_format: header is not JSON ({e})")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict)
                                     and all(isinstance(v, str) for v in metadata.values())):
        raise SafetensorsError("st_format: __metadata__ must map str to str")
    entries = {}
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"st_format: entry '{name}' must have exactly dtype, shape, data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _ITEMSIZE:
            raise SafetensorsError(f"st_format: entry '{name}' has unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise SafetensorsError(f"st_format: entry '{name}' has a bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)):
            raise SafetensorsError(f"st_format: entry '{name}' has bad data_offsets {offsets!r}")
        entries[name] = (dtype, shape, offsets[0], offsets[1])
    # Metadata::validate: sorted by offsets, the entries tile [0, data size) exactly.
    start = 0
    for name, (dtype, shape, begin, end) in sorted(entries.items(), key=lambda e: (e[1][2], e[1][3])):
        if begin != start or end < begin:
            raise SafetensorsError(f"st_format: entry '{name}' data_offsets [{begin}, {end}] should begin at {start}")
        numel = 1
        for d in shape:
            numel *= d
        if end - begin != numel * _ITEMSIZE[dtype]:
            raise SafetensorsError(f"st_format: entry '{name}' has {end - begin} bytes for {dtype} {shape}")
        start = end
    if 8 + n + start != len(buffer):
        raise SafetensorsError(f"st_format: data area is {len(buffer) - 8 - n} bytes, entries cover {start}")
    return entries, metadata, 8 + n


def read_file(filename):
    """({name: torch.Tensor}, metadata or None)."""
    torch = _torch()
    with open(filename, "rb") as f:
        buffer = f.read()
    entries, metadata, base = parse(buffer)
    dtypes = _torch_dtypes()
    out = {}
    for name, (dtype, shape, begin, end) in entries.items():
        if dtype not in dtypes:
            raise SafetensorsError(f"st_format: entry '{name}': dtype {dtype} has no torch equivalent here")
        if begin == end:
            out[name] = torch.empty(shape, dtype=dtypes[dtype])
        else:
            out[name] = torch.frombuffer(bytearray(buffer[base + begin:base + end]), dtype=dtypes[dtype]).reshape(shape)
    return out, metadata


def load_file(filename):
    return read_file(filename)[0]


def interop():
    """(description, save_file, load_file): the real safetensors.torch when importable, else ours."""
    try:
        import safetensors
        from safetensors.torch import load_file as st_load, save_file as st_save
        return f"safetensors.torch {getattr(safetensors, '__version__', '?')}", st_save, st_load
    except ImportError:
        return ("tests/safetensors/st_format.py (the safetensors package is not installed)",
                save_file, load_file)


def self_test():
    """The byte layouts the reference's own unit tests (tensor.rs: test_serialization, test_empty)
    pin down, and a few malformed files; exits non-zero on a mismatch."""
    torch = _torch()
    one = serialize({"attn.0": torch.arange(6, dtype=torch.float32).reshape(1, 2, 3)})
    want = b'{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}'
    assert len(want) == 64 and one == struct.pack("<Q", 64) + want + torch.arange(6.0).float().numpy().tobytes(), one
    # "attn0" is one byte shorter: the header is padded with 7 spaces to 72.
    two = serialize({"attn0": torch.arange(6, dtype=torch.float32).reshape(1, 1, 2, 3)})
    assert two[:8] == struct.pack("<Q", 72) and two[8 + 65:8 + 72] == b" " * 7, two
    assert serialize({}) == struct.pack("<Q", 8) + b"{}" + b" " * 6
    assert serialize({}, {"framework": "pt"}) == struct.pack("<Q", 40) + b'{"__metadata__":{"framework":"pt"}}' + b" " * 5
    mixed = serialize({"b": torch.zeros(1, dtype=torch.bool), "h": torch.zeros(1, dtype=torch.float16),
                       "a": torch.zeros(1, dtype=torch.float32), "z": torch.zeros(1, dtype=torch.float64),
                       "i": torch.zeros(1, dtype=torch.int64), "g": torch.zeros(1, dtype=torch.bfloat16),
                       "c": torch.zeros(1, dtype=torch.float32)})
    order = list(parse_header_order(mixed))
    assert order == ["i", "z", "a", "c", "g", "h", "b"], order
    for bad in (b"\x01", struct.pack("<Q", 100) + b"{}", struct.pack("<Q", 8) + b"[]      ",
                one[:-1], one + b"\0"):
        try:
            parse(bad)
        except SafetensorsError:
            continue
        raise AssertionError(f"accepted a bad file {bad!r}")
    print("st_format: self-test passed")


def parse_header_order(buffer):
    (n,) = struct.unpack("<Q", buffer[:8])
    return [k for k in json.loads(buffer[8:8 + n].decode("utf-8")) if k != "__metadata__"]


if __name__ == "__main__":
    try:
        import torch  # noqa: F401
    except ImportError:
        print("st_format: no torch in this interpreter; skipped")
        sys.exit(77)
    self_test()
