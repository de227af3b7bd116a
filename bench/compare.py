#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Before/after ratios of tapegrad's benchmarks from one run.

    bench/compare.py BEFORE_DIR AFTER_DIR [bench_core bench_softmax ...] [-- extra benchmark args]

Runs each program from BEFORE_DIR and AFTER_DIR alternately (before, after, before, after, ...
ROUNDS times, so machine noise hits both alike), takes the median real time per benchmark over the
rounds and prints after / before. Benchmarks present in only one binary are listed as new/gone.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROUNDS = int(os.environ.get("ROUNDS", "3"))


def run(binary, extra):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    subprocess.run([binary, f"--benchmark_out={out}", "--benchmark_out_format=json", *extra],
                   check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        data = json.load(f)
    os.unlink(out)
    times = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate":
            continue
        unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        times[b["name"]] = b["real_time"] * unit
    return times


def main():
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        i = args.index("--")
        args, extra = args[:i], args[i + 1:]
    before_dir, after_dir, programs = args[0], args[1], args[2:]
    if not programs:
        programs = ["bench_core", "bench_softmax", "bench_nn", "bench_attention"]
    for prog in programs:
        before, after = {}, {}
        for _ in range(ROUNDS):
            for store, d in ((before, before_dir), (after, after_dir)):
                for name, t in run(os.path.join(d, prog), extra).items():
                    store.setdefault(name, []).append(t)
        print(f"\n{prog}: median of {ROUNDS} interleaved runs")
        print(f"{'benchmark':60s} {'before':>12s} {'after':>12s} {'after/before':>12s}")
        for name in sorted(set(before) | set(after)):
            if name not in before or name not in after:
                print(f"{name:60s} {'new' if name in after else 'gone':>12s}")
                continue
            b, a = statistics.median(before[name]), statistics.median(after[name])
            print(f"{name:60s} {b * 1e6:10.2f}us {a * 1e6:10.2f}us {a / b:12.3f}")


if __name__ == "__main__":
    main()
