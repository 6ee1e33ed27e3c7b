#!/usr/bin/env python3
"""Runs the reclamation benchmark grid (bench_reclaim, one configuration per process) and
writes bench/results/reclaim.md: throughput of xenium's containers under wfmm's
xenium_reclaimer beside xenium's own schemes, ratios to max(epoch_based, hazard_pointer),
and a stalled-reader table (throughput, retired-but-not-freed nodes, peak RSS).

Every scheme runs in the same binary on the same allocator (libwfmm.so).

usage: bench/reclaim/run_reclaim.py [--quick | --full] [--duration S] [--threads 1,2,4,8]
           [--schemes wfmm,ebr,...] [--rounds N] [--build DIR] [--out FILE] [--raw FILE]

  --quick  (default) 0.25 s per configuration; 1k keys for every container plus the hash
           map at 100k; under 5 minutes on 2 cores.
  --full   1 s per configuration; 1k and 100k keys for every container.
  --rounds N runs every configuration N times (interleaved) and reports medians.
Raw JSON lines go to bench/results/raw/reclaim.jsonl (ignored by git).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCHEMES = ["wfmm", "ebr", "nebr", "debra", "qsbr", "hp", "he", "stamp"]
SCHEME_NAMES = {
    "wfmm": "wfmm", "ebr": "epoch_based", "nebr": "new_epoch_based", "debra": "debra",
    "qsbr": "quiescent_state_based", "hp": "hazard_pointer", "he": "hazard_eras",
    "stamp": "stamp_it",
}
DS_NAMES = {"map": "hash map", "set": "list set", "msq": "MS queue", "rq": "Ramalhete queue"}
MIX_NAMES = {"read": "90/5/5", "write": "0/50/50", "pushpop": "push/pop"}


def workloads(full):
    """(ds, mix, keys) rows."""
    rows = []
    for keys in ([1000, 100000] if full else [1000]):
        for ds in ["map", "set"]:
            for mix in ["read", "write"]:
                rows.append((ds, mix, keys))
        for ds in ["msq", "rq"]:
            rows.append((ds, "pushpop", keys))
    if not full:
        rows += [("map", "read", 100000), ("map", "write", 100000)]
    return rows


def run_one(binary, ds, mix, keys, threads, scheme, duration, stall):
    cmd = [binary, f"--ds={ds}", f"--scheme={scheme}", f"--threads={threads}",
           f"--keys={keys}", f"--mix={'write' if mix == 'pushpop' else mix}",
           f"--duration={duration}"]
    if stall:
        cmd.append("--stall")
    t0 = time.time()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration * 4 + 120)
    except subprocess.TimeoutExpired:
        return {"error": "timeout", "cmd": " ".join(cmd)}
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {out.returncode}: {' | '.join(tail)}", "cmd": " ".join(cmd)}
    try:
        rec = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "no JSON line", "cmd": " ".join(cmd)}
    rec["wall"] = time.time() - t0
    return rec


def median_rec(recs):
    good = [r for r in recs if "error" not in r]
    if not good:
        return recs[0]
    good.sort(key=lambda r: r["mops"])
    return good[len(good) // 2]


def peak_pending(r):
    if r["scheme"] == "wfmm":
        return max(r["peak_wfmm_retired_pending"], r["pending"])
    return max(r["peak_live"] - r["linked"], r["pending"], 0)


def fmt_mops(v):
    return f"{v:.3f}" if v < 1 else f"{v:.2f}"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true")
    g.add_argument("--full", action="store_true")
    ap.add_argument("--duration", type=float, default=None, help="seconds per configuration")
    ap.add_argument("--threads", default="1,2,4,8")
    ap.add_argument("--stall-threads", type=int, default=4,
                    help="worker threads in the stalled-reader runs (plus the stalled one)")
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "reclaim.md"))
    ap.add_argument("--raw", default=os.path.join(ROOT, "bench", "results", "raw", "reclaim.jsonl"))
    args = ap.parse_args()

    full = bool(args.full)
    duration = args.duration if args.duration else (1.0 if full else 0.25)
    threads = [int(t) for t in args.threads.split(",") if t]
    schemes = [s for s in args.schemes.split(",") if s]
    for s in schemes:
        if s not in SCHEMES:
            sys.exit(f"run_reclaim: unknown scheme {s} (known: {', '.join(SCHEMES)})")
    binary = os.path.join(args.build, "bench", "reclaim", "bench_reclaim")
    if not os.path.exists(binary):
        sys.exit(f"run_reclaim: {binary} is missing (cmake --build {args.build} --target bench_reclaim)")

    load_before = os.getloadavg()[0]
    rows = workloads(full)
    plan = []  # (ds, mix, keys, threads, stall)
    for ds, mix, keys in rows:
        for t in threads:
            plan.append((ds, mix, keys, t, False))
    for ds, mix, keys in rows:
        plan.append((ds, mix, keys, args.stall_threads, True))

    os.makedirs(os.path.dirname(args.raw), exist_ok=True)
    results = {}
    total = len(plan) * len(schemes) * args.rounds
    done = 0
    start = time.time()
    with open(args.raw, "w") as raw:
        for cfg in plan:
            recs = {s: [] for s in schemes}
            for _ in range(args.rounds):
                for s in schemes:  # schemes interleaved within a row
                    ds, mix, keys, t, stall = cfg
                    rec = run_one(binary, ds, mix, keys, t, s, duration, stall)
                    rec.setdefault("ds", ds)
                    rec.setdefault("scheme", s)
                    raw.write(json.dumps(rec) + "\n")
                    raw.flush()
                    recs[s].append(rec)
                    done += 1
                    status = rec.get("error") or f"{rec['mops']:.2f} Mops/s"
                    print(f"[{done}/{total} {time.time() - start:5.0f}s] {ds} {mix} keys={keys} "
                          f"threads={t}{' stall' if stall else ''} {s}: {status}",
                          file=sys.stderr, flush=True)
            for s in schemes:
                results[cfg + (s,)] = median_rec(recs[s])

    load = (load_before, os.getloadavg()[0])
    write_report(args, full, duration, threads, schemes, rows, results, time.time() - start, load)
    print(f"run_reclaim: wrote {args.out}", file=sys.stderr)


def write_report(args, full, duration, threads, schemes, rows, results, elapsed, load):
    def cell(rec):
        return "fail" if "error" in rec else fmt_mops(rec["mops"])

    def base(ds, mix, keys, t, stall):
        vals = [results[(ds, mix, keys, t, stall, s)] for s in ("ebr", "hp") if s in schemes]
        vals = [r["mops"] for r in vals if "error" not in r]
        return max(vals) if vals else None

    L = []
    mode = "--full" if full else "--quick"
    L.append("# Reclamation: xenium's containers under wfmm::xenium_reclaimer and xenium's schemes\n")
    L.append(f"Generated by `bench/reclaim/run_reclaim.py {mode}` on "
             f"{datetime.date.today().isoformat()}: {cpu_model()}, {os.cpu_count()} CPUs, "
             f"{duration:g} s per configuration, {args.rounds} round(s) (median), "
             f"{elapsed / 60:.1f} min in all, load average {load[0]:.1f} before and "
             f"{load[1]:.1f} after (other work on the machine shows up as noise). "
             "Each configuration runs in a fresh process of "
             "`bench_reclaim`, linked with libwfmm.so, so every scheme allocates its nodes "
             "from the same allocator. Every operation runs inside the scheme's "
             "`region_guard`.\n")
    L.append("Containers (xenium 0.0.2): `harris_michael_hash_map<u64,u64>` (65536 buckets), "
             "`harris_michael_list_based_set<u64>`, `michael_scott_queue<u64>`, "
             "`ramalhete_queue<u64*>` (512 entries per node). Mix find/insert/erase in percent; "
             "keys uniform in [0, keys), half of them inserted first; queues: 50% push / 50% "
             "pop after keys/2 pushes.\n")
    L.append("Schemes: " + ", ".join(f"`{s}` = {SCHEME_NAMES[s]}" for s in schemes) +
             " (`hp`, `he`: 4 per thread, static strategy; the epoch schemes as xenium's "
             "aliases define them).\n")
    if os.cpu_count() and max(threads) > os.cpu_count():
        L.append(f"Note: {max(threads)} threads on {os.cpu_count()} CPUs are oversubscribed; "
                 "there the numbers include preemption inside operations.\n")

    L.append("## Throughput (Mops/s, higher is better)\n")
    hdr = ["container", "mix", "keys", "threads"] + schemes + ["wfmm ÷ max(ebr, hp)"]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "|".join(["---"] * 4 + ["---:"] * (len(schemes) + 1)) + "|")
    for ds, mix, keys in rows:
        for t in threads:
            cells = [DS_NAMES[ds], MIX_NAMES[mix], f"{keys:,}", str(t)]
            cells += [cell(results[(ds, mix, keys, t, False, s)]) for s in schemes]
            b = base(ds, mix, keys, t, False)
            w = results.get((ds, mix, keys, t, False, "wfmm"))
            cells.append(f"{w['mops'] / b:.2f}" if b and w and "error" not in w else "-")
            L.append("| " + " | ".join(cells) + " |")
    L.append("")

    L.append("## Ratios to max(epoch_based, hazard_pointer) per row\n")
    hdr = ["container", "mix", "keys", "threads"] + schemes
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "|".join(["---"] * 4 + ["---:"] * len(schemes)) + "|")
    for ds, mix, keys in rows:
        for t in threads:
            b = base(ds, mix, keys, t, False)
            cells = [DS_NAMES[ds], MIX_NAMES[mix], f"{keys:,}", str(t)]
            for s in schemes:
                r = results[(ds, mix, keys, t, False, s)]
                cells.append(f"{r['mops'] / b:.2f}" if b and "error" not in r else "-")
            L.append("| " + " | ".join(cells) + " |")
    L.append("")

    L.append("## Stalled reader\n")
    L.append(f"{args.stall_threads} worker threads plus one thread that takes a `region_guard` "
             "and a `guard_ptr` (to a node outside the container) before the workers start and "
             "holds both until they stop. *pending*: nodes retired and not yet destroyed when "
             "the workers stopped (constructed - destroyed - still linked, counted by the node "
             "base class). *wfmm stats*: `wfmm_stats.retired_pending` at the same moment "
             "(wfmm only). *peak pending*: the largest value seen by sampling every 10 ms "
             "during the run (wfmm: `retired_pending`; the others: live nodes minus the nodes "
             "linked at the end, an estimate). *peak RSS*: VmHWM of the process. Without the "
             "stall, *pending* is shown for comparison.\n")
    hdr = ["container", "mix", "keys", "scheme", "Mops/s", "pending", "wfmm stats",
           "peak pending", "peak RSS MiB", "pending w/o stall", "peak RSS w/o stall"]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "|".join(["---"] * 4 + ["---:"] * 7) + "|")
    st = args.stall_threads
    for ds, mix, keys in rows:
        for s in schemes:
            r = results[(ds, mix, keys, st, True, s)]
            n = results.get((ds, mix, keys, st, False, s))
            cells = [DS_NAMES[ds], MIX_NAMES[mix], f"{keys:,}", s]
            if "error" in r:
                cells += ["fail", "-", "-", "-", "-"]
            else:
                cells += [fmt_mops(r["mops"]), f"{r['pending']:,}",
                          f"{r['wfmm_retired_pending']:,}" if s == "wfmm" else "-",
                          f"{peak_pending(r):,}", f"{r['peak_rss_mib']:.1f}"]
            if n and "error" not in n:
                cells += [f"{n['pending']:,}", f"{n['peak_rss_mib']:.1f}"]
            else:
                cells += ["-", "-"]
            L.append("| " + " | ".join(cells) + " |")
    L.append("")

    fails = [(k, r) for k, r in results.items() if "error" in r]
    if fails:
        L.append("## Failed runs\n")
        for k, r in fails:
            L.append(f"- `{r.get('cmd', k)}`: {r['error']}")
        L.append("")

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
