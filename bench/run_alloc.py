#!/usr/bin/env python3
"""Runs bench_alloc under glibc, mimalloc, jemalloc and wfmm (LD_PRELOAD of the Debian
libraries), interleaved round by round, and prints a Markdown table of medians with the
ratio of each allocator to mimalloc (ns per operation; lower is better).

usage: bench/run_alloc.py [--rounds N] [--min-time S] [--filter REGEX] [--out FILE]
                         [--lib NAME=PATH ...]

--lib (repeatable) replaces the four allocators with the libraries named (PATH "none": no
preload), for an A/B of two builds beside mimalloc, say; the order of the libraries is
reversed every other round, and the table has two decimals. Ratios are to the library
named mimalloc if there is one, else to the first.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBDIR = "/usr/lib/x86_64-linux-gnu"
ALLOCATORS = [
    ("glibc", None),
    ("mimalloc", f"{LIBDIR}/libmimalloc.so.2"),
    ("jemalloc", f"{LIBDIR}/libjemalloc.so.2"),
    ("wfmm", os.path.join(ROOT, "build", "libwfmm.so")),
]


def run_once(binary, lib, min_time, bfilter):
    env = dict(os.environ)
    if lib:
        env["LD_PRELOAD"] = lib
    cmd = [binary, "--benchmark_format=json", f"--benchmark_min_time={min_time}"]
    if bfilter:
        cmd.append(f"--benchmark_filter={bfilter}")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    res = {}
    for b in data["benchmarks"]:
        ips = b.get("items_per_second")
        if ips:
            res[b["name"]] = 1e9 / ips  # ns per operation
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", default="0.2")
    ap.add_argument("--filter", default="")
    ap.add_argument("--out", default="")
    ap.add_argument("--lib", action="append", default=[], metavar="NAME=PATH")
    args = ap.parse_args()
    binary = os.path.join(ROOT, "build", "bench", "bench_alloc")
    allocators = ALLOCATORS
    if args.lib:
        allocators = []
        for spec in args.lib:
            name, sep, path = spec.partition("=")
            if not sep or not name:
                sys.exit(f"run_alloc: --lib wants NAME=PATH, not {spec!r}")
            allocators.append((name, None if path == "none" else os.path.abspath(path)))
    digits = 2 if args.lib else 1
    base_name = "mimalloc" if any(n == "mimalloc" for n, _ in allocators) else allocators[0][0]
    for name, lib in allocators:
        if lib and not os.path.exists(lib):
            sys.exit(f"run_alloc: {name} library {lib} is missing (run scripts/setup)")
    samples = {name: {} for name, _ in allocators}
    for r in range(args.rounds):
        order = allocators if r % 2 == 0 or not args.lib else allocators[::-1]
        for name, lib in order:
            print(f"round {r + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            try:
                res = run_once(binary, lib, args.min_time, args.filter)
            except subprocess.CalledProcessError as e:
                print(f"  {name} FAILED: {e.stderr[-500:]}", file=sys.stderr)
                res = {}
            for k, v in res.items():
                samples[name].setdefault(k, []).append(v)
    names = []
    for name, _ in allocators:
        for k in samples[name]:
            if k not in names:
                names.append(k)
    lines = []
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        pass
    # The CPU model: figures from two VMs of one day differed 2x (mimalloc's pair: 6.0 ns on
    # an AMD EPYC, 2.8 ns on an Intel Xeon), so a table without it cannot be compared.
    lines.append(f"Machine: {platform.node()} ({os.cpu_count()} cores, {model}), "
                 f"{time.strftime('%Y-%m-%d %H:%M')}; "
                 f"command: `bench/run_alloc.py --rounds {args.rounds} --min-time {args.min_time}`; "
                 f"ns per operation (median of rounds), ratio to {base_name} in parentheses.")
    lines.append("")
    header = "| benchmark | " + " | ".join(n for n, _ in allocators) + " |"
    lines.append(header)
    lines.append("|" + "---|" * (len(allocators) + 1))
    geo = {n: [] for n, _ in allocators}
    for k in names:
        med = {}
        for n, _ in allocators:
            v = samples[n].get(k)
            med[n] = statistics.median(v) if v else None
        base = med.get(base_name)
        cells = []
        for n, _ in allocators:
            v = med[n]
            if v is None:
                cells.append("FAILED")
            elif base:
                cells.append(f"{v:.{digits}f} ({v / base:.2f})")
                geo[n].append(v / base)
            else:
                cells.append(f"{v:.{digits}f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    gm = []
    for n, _ in allocators:
        xs = geo[n]
        gm.append(f"{statistics.geometric_mean(xs):.2f}" if xs else "-")
    lines.append("| **geometric mean of ratios** | " + " | ".join(gm) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
