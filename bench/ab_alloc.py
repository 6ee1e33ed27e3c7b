#!/usr/bin/env python3
"""Interleaved A/B of malloc libraries over the suite's allocation workloads (bench/alloc/):
for comparing two builds of libwfmm, or wfmm against an allocator the suite does not know
(mimalloc v3 built from its source, say). Every round runs every workload under every library,
the order of the libraries reversed every other round; the table gives medians of wall time
and peak RSS with their ratios to the first library, and the geometric means.

  python3 bench/ab_alloc.py [--rounds N] [--only NAMES] [--full] [--timeout S] LIB [LIB ...]

LIB: a shared library to LD_PRELOAD, or "glibc" for none, optionally followed by
",VAR=VALUE" settings for its runs only (build/libwfmm.so,WFMM_DEFERRED_FREE=1). NAMES:
workloads or groups as in run_suite.py --only (larson, rptest-t2, transfer, ...). The
measurement is run_suite.py's own (run_argv: rusage of the workload's process tree); a run
that fails (exit status, timeout, no preload) is shown as FAILED and left out of the
medians. Python 3 standard library only.
"""
import argparse
import math
import os
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_suite as rs  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="")
    ap.add_argument("--full", action="store_true", help="the --full parameters and thread counts")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("libs", nargs="+")
    args = ap.parse_args()
    libs = []
    envs = []  # per library: extra environment for its runs
    for spec in args.libs:
        lib, *settings = spec.split(",")
        env = {}
        for kv in settings:
            k, eq, v = kv.partition("=")
            if not eq or not k:
                sys.exit(f"ab_alloc: bad setting {kv!r} in {spec!r} (want VAR=VALUE)")
            env[k] = v
        if lib != "glibc" and not os.path.isfile(lib):
            sys.exit(f"ab_alloc: no such library: {lib}")
        libs.append(None if lib == "glibc" else os.path.abspath(lib))
        envs.append(env)
    workloads, _ = rs.all_workloads(args.full)
    workloads = [w for w in rs.select(workloads, args.only) if w.kind == "alloc"]
    if not workloads:
        sys.exit("ab_alloc: no allocation workload selected")
    for w in workloads:
        if not os.path.exists(w.argv[0]):
            sys.exit(f"ab_alloc: {w.argv[0]} is missing (cmake --build build --target bench_workloads)")

    # As run_suite.py: launched through setsid and a small shell with this process a child
    # subreaper, so a workload's peak RSS is its own, not this harness's (which survives exec).
    isolated = shutil.which("setsid") is not None and os.path.exists("/bin/sh") \
        and rs.rp.become_subreaper()
    if not isolated:
        print("ab_alloc: no setsid or no child subreaper: peak RSS includes this harness's",
              file=sys.stderr)
    runs = {}  # (workload, lib index) -> [(wall, rss_kib)]
    fails = {}
    for r in range(args.rounds):
        # Bound: rounds x workloads x libraries runs, each ended by its timeout.
        order = list(range(len(libs))) if r % 2 == 0 else list(reversed(range(len(libs))))
        for w in workloads:
            for i in order:
                res = rs.run_argv(w.argv, libs[i], {**(w.env or {}), **envs[i]}, args.timeout,
                                  isolated)
                if res["why"] is not None:
                    fails[(w.name, i)] = fails.get((w.name, i), 0) + 1
                    continue
                runs.setdefault((w.name, i), []).append((res["wall"], res["rss_kib"]))
        print(f"ab_alloc: round {r + 1}/{args.rounds} done", file=sys.stderr)

    names = [",".join([os.path.basename(l) if l else "glibc"] + [f"{k}={v}" for k, v in e.items()])
             for l, e in zip(libs, envs)]
    print("| workload | " + " | ".join(f"{n} wall s (ratio) / RSS MiB (ratio)" for n in names) + " |")
    print("|---|" + "---:|" * len(libs))
    logs = [([], []) for _ in libs]
    for w in workloads:
        base = runs.get((w.name, 0))
        cells = []
        for i in range(len(libs)):
            got = runs.get((w.name, i))
            if not got or not base:
                cells.append(f"FAILED ({fails.get((w.name, i), 0)}/{args.rounds})")
                continue
            wall = statistics.median(x[0] for x in got)
            rss = statistics.median(x[1] for x in got)
            bwall = statistics.median(x[0] for x in base)
            brss = statistics.median(x[1] for x in base)
            logs[i][0].append(math.log(wall / bwall))
            logs[i][1].append(math.log(rss / brss))
            note = f" [{fails[(w.name, i)]} failed]" if (w.name, i) in fails else ""
            cells.append(f"{wall:.3f} ({wall / bwall:.2f}) / {rss / 1024:.1f} ({rss / brss:.2f}){note}")
        print(f"| {w.name} | " + " | ".join(cells) + " |")
    geo = []
    for t, m in logs:
        if not t:
            geo.append("n/a")
            continue
        geo.append(f"{math.exp(sum(t) / len(t)):.3f} / {math.exp(sum(m) / len(m)):.3f} [{len(t)}/{len(workloads)}]")
    print("| **geometric mean of ratios** | " + " | ".join(geo) + " |")


if __name__ == "__main__":
    main()
