#!/usr/bin/env python3
"""Runs the reclamation benchmark (bench_reclaim, one configuration per process) and writes
bench/out/reclaim.md (--out; bench/results/ holds the published one): throughput of xenium's containers under wfmm's xenium_reclaimer,
xenium's own schemes, a never-reclaiming "leak" scheme (the upper bound) and liburcu's
cds_lfht (QSBR and memb flavours, hash-map rows only); retired-but-unreclaimed nodes (mean
and peak, sampled every 10 ms); a stalled-reader table; a stalled-reader time series
(unreclaimed nodes every 50 ms); the wfmm targets (MET/MISSED); gnuplot PNGs beside the
report.

Every scheme runs in the same binary on the same allocator (libwfmm.so).

usage: bench/reclaim/run_reclaim.py [--quick | --full] [--duration S] [--threads 1,2,4,8]
           [--schemes wfmm,ebr,...] [--rounds N] [--build DIR] [--out FILE] [--raw FILE]
           [--series-duration S] [--summary FILE] [--command TEXT]

  --quick  (default) 0.2 s per configuration; 1k keys for every container plus the hash
           map at 100k; threads 1,2,4,8; the series run 2 s (hash map 0/50/50): about 2.5
           minutes on 2 cores.
  --full   1 s per configuration; 1k and 100k keys for every container; series runs of 5 s
           on the hash map and the MS queue: about 15 minutes on 2 cores.
  --rounds N runs every configuration N times (interleaved) and reports medians.
  --summary FILE writes a JSON summary (targets, geometric means) for bench/run_suite.py.
A configuration is FAILED when bench_reclaim is not built or lacks the scheme, exits non-zero,
times out, prints no JSON line, reads back a value it did not store (bad > 0), or ends with a
node count other than the operations imply (linked != linked_expected, or retired -
reclaimed != made - gone - linked). FAILED cells stay in the tables and are listed at the
end. Exit status 1 when any configuration FAILED.
Raw JSON lines go to raw/reclaim.jsonl beside the report (ignored by git).
"""
import argparse
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
import run_suite  # noqa: E402  (machine_line, versions_line)

SCHEMES = ["wfmm", "ebr", "nebr", "debra", "qsbr", "hp", "he", "stamp", "leak",
           "urcu_qsbr", "urcu_memb"]
SCHEME_NAMES = {
    "wfmm": "wfmm::xenium_reclaimer", "ebr": "epoch_based", "nebr": "new_epoch_based",
    "debra": "debra", "qsbr": "quiescent_state_based", "hp": "hazard_pointer",
    "he": "hazard_eras", "stamp": "stamp_it", "leak": "never reclaims (upper bound)",
    "urcu_qsbr": "liburcu cds_lfht, QSBR flavour", "urcu_memb": "liburcu cds_lfht, memb flavour",
}
URCU = {"urcu_qsbr", "urcu_memb"}  # hash map only
DS_NAMES = {"map": "hash map", "set": "list set", "msq": "MS queue", "rq": "Ramalhete queue"}
FAMILY_ORDER = ["map", "set", "msq", "rq"]
MIX_NAMES = {"read": "90/5/5", "write": "0/50/50", "pushpop": "push/pop"}
BASE = "ebr"
COLORS = {"wfmm": "#d62728", "ebr": "#1f77b4", "nebr": "#6baed6", "debra": "#17becf",
          "qsbr": "#2ca02c", "hp": "#ff7f0e", "he": "#c49c94", "stamp": "#8c564b",
          "leak": "#7f7f7f", "urcu_qsbr": "#9467bd", "urcu_memb": "#e377c2"}
FLAT_MAX = 1.25   # growth ratio at or below which a series counts as flat
GROW_MIN = 1.5    # growth ratio at or above which a series counts as growing


def workloads(full):
    """(ds, mix, keys) rows of the grid."""
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


def series_rows(full):
    return [("map", "write", 1000)] + ([("msq", "pushpop", 1000)] if full else [])


def applies(scheme, ds):
    return scheme not in URCU or ds == "map"


def run_one(binary, available, ds, mix, keys, threads, scheme, duration, stall, series_ms=0):
    cmd = [binary, f"--ds={ds}", f"--scheme={scheme}", f"--threads={threads}",
           f"--keys={keys}", f"--mix={'write' if mix == 'pushpop' else mix}",
           f"--duration={duration}"]
    if stall:
        cmd.append("--stall")
    if series_ms:
        cmd.append(f"--series={series_ms}")
    scmd = " ".join(os.path.relpath(c, ROOT) if i == 0 else c for i, c in enumerate(cmd))
    if available is None:
        return {"error": "bench_reclaim is not built", "cmd": scmd}
    if scheme not in available:
        why = " (liburcu-dev missing at build time)" if scheme in URCU else ""
        return {"error": f"scheme {scheme} not built into bench_reclaim{why}", "cmd": scmd}
    t0 = time.time()
    limit = max(30.0, duration * 10 + 20)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {limit:g} s", "cmd": scmd}
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        sig = f"killed by signal {-out.returncode}" if out.returncode < 0 else f"exit {out.returncode}"
        return {"error": f"{sig}: {' | '.join(tail)}", "cmd": scmd}
    try:
        rec = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "no JSON line", "cmd": scmd}
    rec["wall"] = time.time() - t0
    rec["cmd"] = scmd
    if rec.get("bad", 0):
        rec["error"] = f"content check: {rec['bad']} values read back differ from what was stored"
    elif rec.get("linked_expected", -1) >= 0 and rec["linked"] != rec["linked_expected"]:
        rec["error"] = (f"content check: {rec['linked']} nodes linked at the end, "
                        f"{rec['linked_expected']} expected from the operations")
    elif rec["pending"] != rec["made"] - rec["gone"] - rec["linked"]:
        rec["error"] = (f"node accounting: retired - reclaimed = {rec['pending']}, made - gone - "
                        f"linked = {rec['made'] - rec['gone'] - rec['linked']}")
    return rec


def median_rec(recs):
    bad = [r for r in recs if "error" in r]
    if bad:
        return dict(bad[0], failed=f"{len(bad)}/{len(recs)}")
    recs = sorted(recs, key=lambda r: r["mops"])
    return recs[len(recs) // 2]


def ok(r):
    return r is not None and "error" not in r


def fmt_mops(v):
    return f"{v:.3f}" if v < 1 else f"{v:.2f}"


def fmt_count(n):
    n = float(n)
    if abs(n) < 10000:
        return f"{n:.0f}"
    if abs(n) < 1e6:
        return f"{n / 1e3:.1f}k"
    return f"{n / 1e6:.2f}M"


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}"


def geomean(xs):
    xs = [max(x, 1e-9) for x in xs]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def growth(series):
    """(growth ratio, slope nodes/s) of a series [[t_ms, unreclaimed, ...], ...]: mean of the
    last quarter of the samples over the mean of the second quarter (1 when both are 0);
    slope by least squares over the second half."""
    n = len(series)
    if n < 8:
        return None, None
    q = n // 4
    a = statistics.mean(p[1] for p in series[q:2 * q])
    b = statistics.mean(p[1] for p in series[3 * q:])
    g = (b / a) if a > 0 else (1.0 if b == 0 else float("inf"))
    half = series[n // 2:]
    ts = [p[0] / 1000 for p in half]
    ys = [p[1] for p in half]
    mt, my = statistics.mean(ts), statistics.mean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    slope = sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / den if den else 0.0
    return g, slope


def verdict_g(g):
    if g is None:
        return "-"
    if g <= FLAT_MAX:
        return "flat"
    if g >= GROW_MIN:
        return "grows"
    return "unclear"


# ---- main ------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true")
    g.add_argument("--full", action="store_true")
    ap.add_argument("--duration", type=float, default=None, help="seconds per configuration")
    ap.add_argument("--threads", default="1,2,4,8")
    ap.add_argument("--stall-threads", type=int, default=4,
                    help="worker threads in the stalled-reader runs (plus the stalled one)")
    ap.add_argument("--series-duration", type=float, default=None,
                    help="seconds of each stalled-reader time-series run (quick 2, full 5)")
    ap.add_argument("--series-ms", type=int, default=50)
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "reclaim.md"))
    ap.add_argument("--raw", default=None,
                    help="raw JSON lines (default: raw/reclaim.jsonl beside --out)")
    ap.add_argument("--summary", default=None, help="JSON summary for bench/run_suite.py")
    ap.add_argument("--command", default=None, help="the command line shown in the report")
    args = ap.parse_args()

    full = bool(args.full)
    duration = args.duration if args.duration else (1.0 if full else 0.2)
    sdur = args.series_duration if args.series_duration else (5.0 if full else 2.0)
    threads = [int(t) for t in args.threads.split(",") if t]
    schemes = [s for s in args.schemes.split(",") if s]
    for s in schemes:
        if s not in SCHEMES:
            sys.exit(f"run_reclaim: unknown scheme {s} (known: {', '.join(SCHEMES)})")
    outdir = os.path.dirname(os.path.abspath(args.out))
    raw_path = args.raw or os.path.join(outdir, "raw", "reclaim.jsonl")
    command = args.command or os.environ.get("BENCH_COMMAND") or ("python3 " + shlex.join(
        [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]))
    binary = os.path.join(args.build, "bench", "reclaim", "bench_reclaim")
    available = None
    if os.path.exists(binary):
        try:
            lst = subprocess.run([binary, "--list-schemes"], capture_output=True, text=True,
                                 timeout=30)
            available = set(lst.stdout.split()) if lst.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            available = None
    if available is None:
        print(f"run_reclaim: {binary} is missing or broken (cmake --build "
              f"{os.path.relpath(args.build, ROOT)} --target bench_reclaim): every run FAILED",
              file=sys.stderr)

    load_before = os.getloadavg()[0]
    rows = workloads(full)
    srows = series_rows(full)
    plan = []  # (kind, ds, mix, keys, threads, stall, duration, series_ms)
    for ds, mix, keys in rows:
        for t in threads:
            plan.append(("grid", ds, mix, keys, t, False, duration, 0))
    for ds, mix, keys in rows:
        plan.append(("stall", ds, mix, keys, args.stall_threads, True, duration, 0))
    for ds, mix, keys in srows:
        plan.append(("series", ds, mix, keys, args.stall_threads, True, sdur, args.series_ms))

    os.makedirs(os.path.dirname(raw_path), exist_ok=True)
    results = {}
    jobs = [(cfg, s) for cfg in plan for s in schemes if applies(s, cfg[1])]
    total = len(jobs) * args.rounds
    est = sum(cfg[6] + 0.1 for cfg, _ in jobs) * args.rounds
    print(f"run_reclaim: {total} runs, about {est / 60:.1f} min", file=sys.stderr, flush=True)
    done = 0
    start = time.time()
    nfail = 0
    with open(raw_path, "w") as raw:
        for cfg in plan:
            kind, ds, mix, keys, t, stall, dur, sms = cfg
            row_schemes = [s for s in schemes if applies(s, ds)]
            recs = {s: [] for s in row_schemes}
            for _ in range(args.rounds):
                for s in row_schemes:  # schemes interleaved within a row
                    rec = run_one(binary, available, ds, mix, keys, t, s, dur, stall, sms)
                    rec.setdefault("ds", ds)
                    rec.setdefault("scheme", s)
                    rec["kind"] = kind
                    raw.write(json.dumps(rec) + "\n")
                    raw.flush()
                    recs[s].append(rec)
                    done += 1
                    spent = time.time() - start
                    left = spent / done * (total - done)
                    status = ("FAILED: " + rec["error"]) if "error" in rec else f"{rec['mops']:.2f} Mops/s"
                    if "error" in rec:
                        nfail += 1
                    print(f"[{done}/{total}, {total - done} left, {spent:4.0f} s, ~{left / 60:.1f} min "
                          f"left] {kind} {ds} {mix} keys={keys} threads={t}"
                          f"{' +stalled reader' if stall else ''} {s}: {status}",
                          file=sys.stderr, flush=True)
            for s in row_schemes:
                results[(kind, ds, mix, keys, t, s)] = median_rec(recs[s])
    elapsed = time.time() - start
    load = (load_before, os.getloadavg()[0])

    ctx = dict(args=args, full=full, duration=duration, sdur=sdur, threads=threads,
               schemes=schemes, rows=rows, srows=srows, results=results, elapsed=elapsed,
               load=load, command=command, outdir=outdir, raw_path=raw_path)
    write_series_tsv(ctx)
    plots = make_plots(ctx)
    text, summary = report(ctx, plots)
    os.makedirs(outdir, exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    if args.summary:
        summary.update(out=os.path.abspath(args.out), elapsed=elapsed, failed=nfail, runs=total)
        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=1)
    print(f"run_reclaim: {total} runs in {elapsed / 60:.1f} min, {nfail} FAILED; wrote {args.out}",
          file=sys.stderr)
    return 1 if nfail else 0


# ---- outputs ---------------------------------------------------------------------------------

def series_file(ctx):
    return os.path.join(ctx["outdir"], "reclaim-stall-series.tsv")


def write_series_tsv(ctx):
    res = ctx["results"]
    with open(series_file(ctx), "w") as f:
        f.write("# stalled-reader time series: " + ctx["command"] + "\n")
        f.write("container\tmix\tkeys\tscheme\tt_ms\tunreclaimed\twfmm_retired_pending\tops\t"
                "bytes_in_use\n")
        for ds, mix, keys in ctx["srows"]:
            for s in ctx["schemes"]:
                r = res.get(("series", ds, mix, keys, ctx["args"].stall_threads, s))
                if not ok(r):
                    continue
                for p in r.get("series", []):
                    f.write(f"{ds}\t{mix}\t{keys}\t{s}\t{p[0]:.1f}\t{p[1]}\t{p[2]}\t{p[3]}\t{p[4]}\n")


def run_gnuplot(gp, script, out):
    with tempfile.NamedTemporaryFile("w", suffix=".gp", delete=False) as f:
        f.write(script)
        sp = f.name
    try:
        r = subprocess.run([gp, sp], capture_output=True, text=True)
    finally:
        os.unlink(sp)
    if r.returncode != 0 or not os.path.exists(out):
        return f"gnuplot failed on {os.path.basename(out)}: {r.stderr.strip()[:300]}"
    return None


def style(s):
    return (f"lw {3 if s == 'wfmm' else 1.5} lc rgb '{COLORS.get(s, '#000000')}'"
            + (" dt 2" if s == "leak" else ""))


def make_plots(ctx):
    """Throughput per thread count (one PNG per grid row) and the stalled-reader series."""
    res = {"files": [], "error": None}
    gp = shutil.which("gnuplot")
    if not gp:
        res["error"] = "gnuplot is not installed (Debian package gnuplot-nox)"
        return res
    outdir, schemes, results = ctx["outdir"], ctx["schemes"], ctx["results"]
    with tempfile.TemporaryDirectory() as td:
        for ds, mix, keys in ctx["rows"]:
            cols = [s for s in schemes if applies(s, ds)]
            data = os.path.join(td, f"{ds}-{mix}-{keys}.dat")
            with open(data, "w") as f:
                for t in ctx["threads"]:
                    vals = []
                    for s in cols:
                        r = results.get(("grid", ds, mix, keys, t, s))
                        vals.append(f"{r['mops']:.4f}" if ok(r) else "?")
                    f.write(f"{t} " + " ".join(vals) + "\n")
            fn = f"reclaim-tput-{ds}-{mix.replace('/', '')}-{keys}.png"
            out = os.path.join(outdir, fn)
            title = f"{DS_NAMES[ds]}, {MIX_NAMES[mix]}, {keys:,} keys: throughput per thread count"
            plot = ", ".join(
                f"'{data}' using 1:{i + 2} with linespoints {style(s)} pt {i % 13 + 1} "
                f"title '{s}'" for i, s in enumerate(cols))
            script = f"""
set terminal pngcairo size 900,560 noenhanced font ',10'
set output '{out}'
set title '{title}'
set datafile missing '?'
set logscale x 2
set xtics ({', '.join(str(t) for t in ctx['threads'])})
set xlabel 'threads ({os.cpu_count()} CPUs)'
set ylabel 'Mops/s (higher is better)'
set yrange [0:*]
set grid
set key outside right top vertical
plot {plot}
"""
            err = run_gnuplot(gp, script, out)
            if err:
                res["error"] = err
                return res
            res["files"].append((fn, title))
        for ds, mix, keys in ctx["srows"]:
            cols = [s for s in schemes if applies(s, ds)]
            parts = []
            for i, s in enumerate(cols):
                r = results.get(("series", ds, mix, keys, ctx["args"].stall_threads, s))
                if not ok(r) or not r.get("series"):
                    continue
                data = os.path.join(td, f"series-{ds}-{s}.dat")
                with open(data, "w") as f:
                    for p in r["series"]:
                        f.write(f"{p[0] / 1000:.3f} {max(p[1], 1)} {p[1]}\n")
                parts.append((data, s, i))
            if not parts:
                continue
            for scale in ("log", "linear"):
                fn = f"reclaim-stall-{ds}-{mix.replace('/', '')}-{keys}-{scale}.png"
                out = os.path.join(outdir, fn)
                title = (f"{DS_NAMES[ds]}, {MIX_NAMES[mix]}, {keys:,} keys, "
                         f"{ctx['args'].stall_threads} threads + 1 stalled reader: "
                         f"unreclaimed nodes over time ({scale} scale)")
                col = 2 if scale == "log" else 3
                plot = ", ".join(
                    f"'{d}' using 1:{col} with lines {style(s)} title '{s}'" for d, s, i in parts)
                script = f"""
set terminal pngcairo size 900,560 noenhanced font ',10'
set output '{out}'
set title '{title}'
set xlabel 'time since the workers started (s)'
set ylabel 'retired, not yet reclaimed nodes{" (log scale; 0 shown as 1)" if scale == "log" else ""}'
{"set logscale y 10" if scale == "log" else "set yrange [0:*]"}
set grid
set key outside right top vertical
plot {plot}
"""
                err = run_gnuplot(gp, script, out)
                if err:
                    res["error"] = err
                    return res
                res["files"].append((fn, title))
    return res


def report(ctx, plots):
    args, results, schemes = ctx["args"], ctx["results"], ctx["schemes"]
    threads, rows = ctx["threads"], ctx["rows"]
    st = args.stall_threads
    mode = "full" if ctx["full"] else "quick"

    def rec(kind, ds, mix, keys, t, s):
        return results.get((kind, ds, mix, keys, t, s))

    def ratio(kind, ds, mix, keys, t, s, base):
        a, b = rec(kind, ds, mix, keys, t, s), rec(kind, ds, mix, keys, t, base)
        if ok(a) and ok(b) and b["mops"] > 0:
            return a["mops"] / b["mops"]
        return None

    def base_max(ds, mix, keys, t):
        vals = [rec("grid", ds, mix, keys, t, s) for s in ("ebr", "hp") if s in schemes]
        if not vals or not all(ok(v) for v in vals):
            return None
        return max(v["mops"] for v in vals)

    def cell(r, base_r):
        if r is None:
            return "n/a"
        if not ok(r):
            return "FAILED" + (f" ({r['failed']})" if r.get("failed") else "")
        s = fmt_mops(r["mops"])
        if ok(base_r) and base_r["mops"] > 0:
            s += f" ({r['mops'] / base_r['mops']:.2f})"
        return s

    L = []
    L.append(f"# Reclamation benchmark ({mode})")
    L.append("")
    L.append(f"- Machine: {run_suite.machine_line()}.")
    L.append(f"- Command: `{ctx['command']}` (in {ROOT}); "
             f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {ctx['duration']:g} s per configuration, "
             f"{args.rounds} round(s) (median by throughput), {ctx['elapsed'] / 60:.1f} min in "
             f"all; load average {ctx['load'][0]:.1f} before, {ctx['load'][1]:.1f} after "
             "(other work on the machine shows up as noise).")
    L.append(f"- Versions: {run_suite.versions_line()}; libxenium-dev "
             f"{dpkg_version('libxenium-dev')}; liburcu-dev {dpkg_version('liburcu-dev')}.")
    L.append("- Binary: `build/bench/reclaim/bench_reclaim`, one configuration per process, "
             "linked with libwfmm.so: every scheme (and liburcu) allocates from the same "
             "allocator. Raw JSON lines: `" + os.path.relpath(ctx["raw_path"], ROOT) + "`.")
    L.append("")
    L.append("Containers (xenium 0.0.2): `harris_michael_hash_map<u64,u64>` (65536 buckets), "
             "`harris_michael_list_based_set<u64>`, `michael_scott_queue<u64>`, "
             "`ramalhete_queue<u64*>` (512 entries per node). Mix = find/insert/erase percent; "
             "keys uniform in [0, keys), half of them inserted first; queues: 50% push / 50% "
             "pop after keys/2 pushes. Every operation runs inside the scheme's `region_guard`.")
    L.append("")
    L.append("Schemes: " + "; ".join(f"`{s}` = {SCHEME_NAMES[s]}" for s in schemes) + ". "
             "`hp`, `he`: 4 per thread, static strategy. `leak` is a xenium-compatible "
             "reclaimer whose `reclaim()` forgets the node: no reclamation work and no memory "
             "reuse (its memory grows for the whole run), the throughput upper bound. "
             "`urcu_*`: liburcu's `cds_lfht` (65536 buckets, no resizing) on the same hash-map "
             "workload, nodes freed by `call_rcu` (liburcu's call_rcu worker thread); memb: a "
             "read-side section per operation; QSBR: a quiescent state after every operation. "
             "They exist for the hash map only (n/a elsewhere).")
    L.append("")
    L.append("Figures: Mops/s, median over rounds, with the ratio to epoch_based in "
             "parentheses (higher is better). *Unreclaimed*: nodes retired and not yet "
             "reclaimed, counted for every scheme alike (the node's deleter type counts each "
             "retirement and each reclamation; urcu: call_rcu'd minus freed), sampled every "
             "10 ms while the workers ran: mean / peak. Geometric means are over the rows where "
             "the scheme and epoch_based both ran; [n/N] marks fewer than all rows. FAILED: "
             "crashed, timed out, or failed the content check (a value read back that was "
             "never stored, or a node count at the end other than the operations imply); "
             "FAILED cells are listed at the end.")
    L.append("")
    if os.cpu_count() and max(threads) > os.cpu_count():
        L.append(f"Note: {max(threads)} threads on {os.cpu_count()} CPUs are oversubscribed; "
                 "there the numbers include preemption inside operations.")
        L.append("")

    # ---- targets
    grid_keys = [(ds, mix, keys, t) for ds, mix, keys in rows for t in threads]
    n = len(grid_keys)
    summary = {"targets": [], "mode": mode}

    def verdict(okv):
        return "MET" if okv else "**MISSED**"

    tgt = []
    if all(s in schemes for s in ("wfmm", "ebr", "hp")):
        met, fails, rs = 0, [], []
        for ds, mix, keys, t in grid_keys:
            w, b = rec("grid", ds, mix, keys, t, "wfmm"), base_max(ds, mix, keys, t)
            if not ok(w) or b is None:
                fails.append(f"{DS_NAMES[ds]} {MIX_NAMES[mix]} {keys} t{t}")
                continue
            rs.append(w["mops"] / b)
            met += w["mops"] >= b
        g = geomean(rs) if rs else None
        worst = min(rs) if rs else None
        line = (f"Throughput: on every row wfmm >= max(epoch_based, hazard_pointer): "
                f"{verdict(met == n)} ({met}/{n} rows; geometric mean of wfmm ÷ max "
                f"{fmt_ratio(g)}, worst {fmt_ratio(worst)}"
                + (f"; FAILED rows count as misses: {', '.join(fails)}" if fails else "") + ").")
        tgt.append(line)
    else:
        tgt.append("Throughput vs max(epoch_based, hazard_pointer): not evaluated (schemes missing).")
    if all(s in schemes for s in ("wfmm", "leak")):
        met, fails, rs = 0, [], []
        for ds, mix, keys, t in grid_keys:
            w, lk = rec("grid", ds, mix, keys, t, "wfmm"), rec("grid", ds, mix, keys, t, "leak")
            if not ok(w) or not ok(lk):
                fails.append(f"{DS_NAMES[ds]} {MIX_NAMES[mix]} {keys} t{t}")
                continue
            rs.append(w["mops"] / lk["mops"])
            met += w["mops"] >= 0.9 * lk["mops"]
        g = geomean(rs) if rs else None
        tgt.append(f"Throughput: on every row wfmm >= 0.9 x leak: {verdict(met == n)} "
                   f"({met}/{n} rows; geometric mean of wfmm ÷ leak {fmt_ratio(g)}, worst "
                   f"{fmt_ratio(min(rs) if rs else None)}"
                   + (f"; FAILED rows count as misses: {', '.join(fails)}" if fails else "") + ").")
    else:
        tgt.append("Throughput vs 0.9 x leak: not evaluated (schemes missing).")
    for ds, mix, keys in ctx["srows"]:
        name = f"{DS_NAMES[ds]} {MIX_NAMES[mix]} {keys:,} keys"
        w = rec("series", ds, mix, keys, st, "wfmm")
        e = rec("series", ds, mix, keys, st, "ebr")
        q = rec("series", ds, mix, keys, st, "qsbr")
        if not all(ok(x) for x in (w, e, q)):
            tgt.append(f"Stalled reader ({name}): **MISSED** (a run of wfmm, epoch_based or "
                       "quiescent_state_based FAILED or was not run).")
            tgt.append(f"Stalled reader ({name}), wfmm at epoch_based's throughput: **MISSED** "
                       "(FAILED or not run).")
            continue
        gw, ge, gq = growth(w["series"])[0], growth(e["series"])[0], growth(q["series"])[0]
        flat = gw is not None and gw <= FLAT_MAX
        grow = all(x is not None and x >= GROW_MIN for x in (ge, gq))
        tgt.append(f"Stalled reader ({name}): wfmm's unreclaimed nodes flat where epoch_based "
                   f"and quiescent_state_based grow: {verdict(flat and grow)} (growth ratio, "
                   f"last quarter ÷ second quarter of the run: wfmm {fmt_ratio(gw)} "
                   f"[{verdict_g(gw)}], epoch_based {fmt_ratio(ge)} [{verdict_g(ge)}], "
                   f"quiescent_state_based {fmt_ratio(gq)} [{verdict_g(gq)}]; flat <= "
                   f"{FLAT_MAX}, grows >= {GROW_MIN}; peak wfmm {fmt_count(w['unreclaimed_peak'])}"
                   f" vs epoch_based {fmt_count(e['unreclaimed_peak'])}).")
        r = w["mops"] / e["mops"] if e["mops"] > 0 else 0
        tgt.append(f"Stalled reader ({name}), wfmm at epoch_based's throughput (>= 1.00x): "
                   f"{verdict(r >= 1.0)} (wfmm {fmt_mops(w['mops'])} vs epoch_based "
                   f"{fmt_mops(e['mops'])} Mops/s: {r:.2f}).")
    L.append("## Targets (wfmm)")
    L.append("")
    for i, line in enumerate(tgt):
        L.append(f"{i + 1}. {line}")
    L.append("")
    L.append(f"The throughput targets are per row of the grid below ({n} rows: every container, "
             "mix, key range and thread count), FAILED counting as a miss. The stalled-reader "
             "targets use the time-series runs (section below).")
    L.append("")
    summary["targets"] = tgt

    # ---- summary of geomeans
    L.append("## Summary: geometric mean of the throughput ratio to epoch_based")
    L.append("")
    L.append("| family | rows | " + " | ".join(schemes) + " |")
    L.append("|---|---:|" + "---:|" * len(schemes))
    summ_rows = []
    fams = [f for f in FAMILY_ORDER if any(r[0] == f for r in rows)]
    for fam in fams + ["all"]:
        keysf = [k for k in grid_keys if fam == "all" or k[0] == fam]
        cells = []
        for s in schemes:
            rs = [ratio("grid", ds, mix, keys, t, s, BASE) for ds, mix, keys, t in keysf
                  if applies(s, ds)]
            nrow = sum(1 for k in keysf if applies(s, k[0]))
            good = [x for x in rs if x is not None]
            if not nrow:
                cells.append("n/a")
            elif not good:
                cells.append("-")
            else:
                cells.append(f"{geomean(good):.2f}" + (f" [{len(good)}/{nrow}]" if len(good) < nrow else ""))
        line = f"| {'all rows' if fam == 'all' else DS_NAMES[fam]} | {len(keysf)} | " + " | ".join(cells) + " |"
        L.append(line)
        summ_rows.append(line)
    L.append("")
    summary["geomean_table"] = ["| family | rows | " + " | ".join(schemes) + " |",
                                "|---|---:|" + "---:|" * len(schemes)] + summ_rows

    # ---- per family tables
    for fam in fams:
        frows = [(ds, mix, keys) for ds, mix, keys in rows if ds == fam]
        cols = [s for s in schemes if applies(s, fam)]
        L.append(f"## {DS_NAMES[fam]}")
        L.append("")
        L.append("Throughput, Mops/s (ratio to epoch_based).")
        L.append("")
        extra = ["wfmm ÷ max(ebr, hp)", "wfmm ÷ leak"]
        L.append("| mix | keys | threads | " + " | ".join(cols) + " | " + " | ".join(extra) + " |")
        L.append("|---|---:|---:|" + "---:|" * (len(cols) + len(extra)))
        for ds, mix, keys in frows:
            for t in threads:
                b = rec("grid", ds, mix, keys, t, BASE)
                cells = [cell(rec("grid", ds, mix, keys, t, s), b) for s in cols]
                bm = base_max(ds, mix, keys, t)
                w = rec("grid", ds, mix, keys, t, "wfmm")
                cells.append(f"{w['mops'] / bm:.2f}" if ok(w) and bm else "-")
                lr = ratio("grid", ds, mix, keys, t, "wfmm", "leak")
                cells.append(fmt_ratio(lr))
                L.append(f"| {MIX_NAMES[mix]} | {keys:,} | {t} | " + " | ".join(cells) + " |")
        # geometric-mean row
        fk = [(ds, mix, keys, t) for ds, mix, keys in frows for t in threads]
        cells = []
        for s in cols:
            pairs = [(rec("grid", *k, s), rec("grid", *k, BASE)) for k in fk]
            pairs = [(a, b) for a, b in pairs if ok(a) and ok(b)]
            if not pairs:
                cells.append("-")
                continue
            gv = geomean([a["mops"] for a, _ in pairs])
            gr = geomean([a["mops"] / b["mops"] for a, b in pairs])
            cells.append(f"{fmt_mops(gv)} ({gr:.2f})" + (f" [{len(pairs)}/{len(fk)}]" if len(pairs) < len(fk) else ""))
        rs = []
        for k in fk:
            w, bm = rec("grid", *k, "wfmm"), base_max(*k)
            if ok(w) and bm:
                rs.append(w["mops"] / bm)
        cells.append(fmt_ratio(geomean(rs) if rs else None))
        rs = [x for x in (ratio("grid", *k, "wfmm", "leak") for k in fk) if x is not None]
        cells.append(fmt_ratio(geomean(rs) if rs else None))
        L.append("| **geometric mean** | | | " + " | ".join(cells) + " |")
        L.append("")
        L.append("Unreclaimed nodes while the workers ran, mean / peak (sampled every 10 ms).")
        L.append("")
        L.append("| mix | keys | threads | " + " | ".join(cols) + " |")
        L.append("|---|---:|---:|" + "---:|" * len(cols))
        for ds, mix, keys in frows:
            for t in threads:
                cells = []
                for s in cols:
                    r = rec("grid", ds, mix, keys, t, s)
                    if r is None:
                        cells.append("n/a")
                    elif not ok(r):
                        cells.append("FAILED")
                    else:
                        cells.append(f"{fmt_count(r['unreclaimed_mean'])} / {fmt_count(r['unreclaimed_peak'])}")
                L.append(f"| {MIX_NAMES[mix]} | {keys:,} | {t} | " + " | ".join(cells) + " |")
        L.append("")

    # ---- stalled reader table
    L.append("## Stalled reader, every row")
    L.append("")
    L.append(f"{st} worker threads plus one thread that takes a `region_guard` and a `guard_ptr` "
             "(to a node outside the container; urcu: a read-side section, QSBR: online "
             "without quiescent states) before the workers start and holds them until the "
             f"workers stop ({ctx['duration']:g} s). Mops/s (ratio to epoch_based); "
             "unreclaimed mean / peak while running and at the stop; *wfmm_stats*: wfmm's "
             "`retired_pending` at the stop (wfmm only; allocator-wide); peak RSS: VmHWM. The "
             f"last two columns are the same row without the stalled reader ({st} threads).")
    L.append("")
    hdr = ["container", "mix", "keys", "scheme", "Mops/s", "unreclaimed mean / peak",
           "at stop", "wfmm_stats", "peak RSS MiB", "w/o stall: unreclaimed peak", "w/o stall: RSS MiB"]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|---|---|---:|---|" + "---:|" * 7)
    for ds, mix, keys in rows:
        b = rec("stall", ds, mix, keys, st, BASE)
        for s in schemes:
            if not applies(s, ds):
                continue
            r = rec("stall", ds, mix, keys, st, s)
            nr = rec("grid", ds, mix, keys, st, s)
            cells = [DS_NAMES[ds], MIX_NAMES[mix], f"{keys:,}", s]
            if not ok(r):
                cells += ["FAILED", "-", "-", "-", "-"]
            else:
                cells += [cell(r, b), f"{fmt_count(r['unreclaimed_mean'])} / {fmt_count(r['unreclaimed_peak'])}",
                          fmt_count(r["pending"]),
                          fmt_count(r["wfmm_retired_pending"]) if s == "wfmm" else "-",
                          f"{r['peak_rss_mib']:.1f}"]
            if ok(nr):
                cells += [fmt_count(nr["unreclaimed_peak"]), f"{nr['peak_rss_mib']:.1f}"]
            else:
                cells += ["-" if nr is None else "FAILED", "-"]
            L.append("| " + " | ".join(cells) + " |")
    L.append("")

    # ---- series
    L.append("## Stalled reader over time")
    L.append("")
    L.append(f"{st} worker threads plus the stalled reader for {ctx['sdur']:g} s; unreclaimed "
             f"nodes recorded every {args.series_ms} ms (full series: "
             f"`{os.path.relpath(series_file(ctx), ROOT)}`, plotted below). Growth ratio: mean "
             "of the last quarter of the samples ÷ mean of the second quarter (linear growth "
             f"from zero gives 2.33, a bounded count about 1); flat <= {FLAT_MAX}, grows >= "
             f"{GROW_MIN}. Slope: least squares over the second half.")
    L.append("")
    for ds, mix, keys in ctx["srows"]:
        L.append(f"### {DS_NAMES[ds]}, {MIX_NAMES[mix]}, {keys:,} keys")
        L.append("")
        L.append("| scheme | Mops/s | at 25% | at 50% | at 75% | at end | peak | growth ratio | "
                 "slope (nodes/s) | verdict | peak RSS MiB |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
        b = rec("series", ds, mix, keys, st, BASE)
        for s in schemes:
            if not applies(s, ds):
                continue
            r = rec("series", ds, mix, keys, st, s)
            if not ok(r):
                L.append(f"| {s} | FAILED | | | | | | | | | |")
                continue
            ser = r.get("series", [])
            pts = []
            for frac in (0.25, 0.5, 0.75, 1.0):
                if ser:
                    idx = min(len(ser) - 1, max(0, int(round(frac * len(ser))) - 1))
                    pts.append(fmt_count(ser[idx][1]))
                else:
                    pts.append("-")
            g, slope = growth(ser)
            L.append(f"| {s} | {cell(r, b)} | " + " | ".join(pts) +
                     f" | {fmt_count(r['unreclaimed_peak'])} | {fmt_ratio(g)} | "
                     f"{fmt_count(slope) if slope is not None else '-'} | {verdict_g(g)} | "
                     f"{r['peak_rss_mib']:.1f} |")
        L.append("")

    # ---- plots
    L.append("## Plots")
    L.append("")
    if plots["error"]:
        L.append(f"No (or not all) plots: {plots['error']}.")
        L.append("")
    for fn, title in plots["files"]:
        L.append(f"![{title}]({fn})")
        L.append("")

    # ---- failures
    L.append("## Failed runs")
    L.append("")
    fails = [(k, r) for k, r in results.items() if not ok(r)]
    if fails:
        for k, r in fails:
            L.append(f"- {k[0]} `{r.get('cmd', k)}`: {r['error']}"
                     + (f" ({r['failed']} rounds)" if r.get("failed") else ""))
    else:
        L.append("None.")
    L.append("")
    summary["failed_list"] = [f"`{r.get('cmd', k)}`: {r['error']}" for k, r in fails]
    return "\n".join(L), summary


def dpkg_version(pkg):
    q = shutil.which("dpkg-query")
    if not q:
        return "?"
    r = subprocess.run([q, "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "?"


if __name__ == "__main__":
    sys.exit(main())
