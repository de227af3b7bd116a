#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""torch.save / torch.load of the 784-1024-1024-10 float32 MLP (torch.nn.Sequential, 1,863,690
parameters), the Python side of bench/bench_checkpoint.cpp. Prints the median time in ms of
`--repeats` runs (default 21) and the file size in bytes:

    /usr/bin/python3 bench/torch_checkpoint.py [--repeats N] [--dir DIR]

  torch.save                     torch.save(net.state_dict(), path) (zip + pickle; no fsync)
  torch.save + fsync             the same, then os.fsync: what tapegrad's atomic save also does
  torch.load                     torch.load(path) -> state dict
  torch.load + load_state_dict   the state dict copied into an existing module (what nn::load does)
  safetensors.torch save/load    when the safetensors package is importable (save_file; load_file
                                 + load_state_dict)
Threads: torch.set_num_threads(1), as the C++ benchmarks. Run on a quiet machine; compare within
one run.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

try:
    import torch
except ImportError:
    sys.exit("torch_checkpoint: no torch in this interpreter; run it with /usr/bin/python3 (Debian's python3-torch)")


def median_ms(fn, repeats):
    fn()  # warm-up (page cache, allocator)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(1)
    sizes = [784, 1024, 1024, 10]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    into = torch.nn.Sequential(*[type(m)(m.in_features, m.out_features) if isinstance(m, torch.nn.Linear)
                                 else torch.nn.ReLU() for m in layers])
    params = sum(p.numel() for p in net.parameters())
    raw = params * 4
    print(f"torch_checkpoint: torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"MLP {'-'.join(map(str, sizes))} float32, {params} parameters, {raw} raw bytes")

    path = os.path.join(args.dir, f"torch_checkpoint.{os.getpid()}.pt")
    rows = []

    def save():
        torch.save(net.state_dict(), path)

    def save_sync():
        with open(path, "wb") as f:
            torch.save(net.state_dict(), f)
            f.flush()
            os.fsync(f.fileno())

    rows.append(("torch.save", median_ms(save, args.repeats), os.path.getsize(path)))
    rows.append(("torch.save + fsync", median_ms(save_sync, args.repeats), os.path.getsize(path)))
    rows.append(("torch.load", median_ms(lambda: torch.load(path), args.repeats), os.path.getsize(path)))
    rows.append(("torch.load + load_state_dict", median_ms(lambda: into.load_state_dict(torch.load(path)), args.repeats),
                 os.path.getsize(path)))
    os.remove(path)

    try:
        from safetensors.torch import load_file, save_file
        st_path = os.path.join(args.dir, f"torch_checkpoint.{os.getpid()}.safetensors")
        rows.append(("safetensors.torch.save_file", median_ms(lambda: save_file(net.state_dict(), st_path), args.repeats),
                     os.path.getsize(st_path)))
        rows.append(("safetensors.torch.load_file + load_state_dict",
                     median_ms(lambda: into.load_state_dict(load_file(st_path)), args.repeats), os.path.getsize(st_path)))
        os.remove(st_path)
    except ImportError:
        print("torch_checkpoint: the safetensors package is not installed; safetensors.torch not timed")

    print(f"{'what':<48} {'ms (median)':>12} {'bytes':>10} {'bytes - raw':>12}")
    for name, ms, size in rows:
        print(f"{name:<48} {ms:>12.2f} {size:>10} {size - raw:>12}")


if __name__ == "__main__":
    main()
