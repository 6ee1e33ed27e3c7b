#!/usr/bin/env python3
"""The wfmm benchmark suite: the allocation workloads (bench/alloc/, our own programs) and the
real-program workloads (tests/programs/*.sh) under glibc, mimalloc, jemalloc, wfmm and
wfmm-deferred (wfmm with WFMM_DEFERRED_FREE=1) (LD_PRELOAD), interleaved round by round; writes
a Markdown report with medians of wall time, CPU time (user+sys) and peak RSS, ratios to
mimalloc, geometric means, the wfmm targets, the deferred-free targets (wfmm-deferred against
wfmm) and gnuplot plots. First it runs the reclamation benchmark (bench/reclaim/run_reclaim.py,
same --quick/--full), which writes reclaim.md beside the report; the report links to it and
repeats its targets.

usage: bench/run_suite.py [--quick | --full] [--rounds N] [--only NAMES] [--out FILE] [--publish]
                          [--timeout S] [--list] [--deferred all|programs|none] [--no-reclaim]

  --quick        the quick suite (default): each allocation workload at its quick size and
                 thread count, real programs at SCALE=1, the quick reclamation grid (about
                 2 min): under 10 minutes on 2 cores
  --full         5x the work of every allocation workload, more thread counts (1, 2, 4),
                 real programs at SCALE=3, the full reclamation grid: about an hour on 2 cores
  --rounds N     rounds; every round runs every workload under every allocator (default 3)
  --only NAMES   comma-separated: a row (larson-t2), a workload (larson: all its rows), a
                 real program (sqlite3), or a group: alloc, programs, reclaim (the
                 reclamation part), or a family key (transfer, sharing, local, large)
  --out FILE     the report (default bench/out/report.md, --full: bench/out/full/report.md;
                 bench/out/ is ignored by git); the PNG plots and reclaim.md go beside it
  --publish      default report under bench/results/ instead (the tracked, published figures),
                 then docs/benchmarks.md regenerated from bench/results/ (bench/publish_docs.py)
  --timeout S    per-run limit in seconds; a run over it is killed and FAILED
                 (default 300 with --quick, 1200 with --full)
  --list         print the workloads with their command lines and exit
  --deferred W   which workloads the wfmm-deferred column runs: all, programs or none
                 (default all)
  --no-reclaim   skip the reclamation part (bench/reclaim/run_reclaim.py, which otherwise
                 runs first and writes reclaim.md beside the report; --only runs it only
                 when NAMES include "reclaim")

A run is FAILED when it exits non-zero (the allocation workloads exit 3 when a block's
content changed), times out, cannot preload its library, prints no checksum line (allocation
workloads), or prints something other than glibc's output for the same workload in the same
round; glibc's output must also be the same in every round. FAILED runs appear in the tables
as FAILED (k/N) and are listed at the end of the report; they are never dropped. Progress goes
to stderr. Exit status 1 when any run FAILED. Python 3 standard library only, Linux.

Measurement: as bench/run_programs.py (whose helpers this imports), CPU time and peak RSS come
from os.wait4() on the workload's process, with this process a child subreaper; see
run_measured() there and run_argv() here for how the workload is started so that its peak
RSS does not include ours.
"""
import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_programs as rp  # noqa: E402  (measurement helpers, allocator list, baseline)

ROOT = rp.ROOT
ALLOC_BIN = os.path.join(ROOT, "build", "bench", "alloc")
# [(name, LD_PRELOAD path or None, extra env)]: run_programs.py's four, plus wfmm with deferred
# free (free/delete retire the block; reclaim/README.md), compared with wfmm (immediate).
DEFERRED = "wfmm-deferred"
ALLOCATORS = rp.ALLOCATORS + [
    (DEFERRED, os.path.join(ROOT, "build", "libwfmm.so"), {"WFMM_DEFERRED_FREE": "1"}),
]
# Which workloads wfmm-deferred runs: "all" by default; "programs" (the real programs only) is
# the fallback should --quick, reclamation part included, no longer fit in 10 minutes on 2
# cores (it adds about 1.5 min to --quick); --deferred overrides.
DEFERRED_DEFAULT = {"quick": "all", "full": "all"}
BASELINE = rp.BASELINE       # "mimalloc": ratios are to it
REFERENCE = rp.REFERENCE     # "glibc": outputs are compared with its output
WFMM = "wfmm"
FULL_FACTOR = 5

# ---- the workloads ---------------------------------------------------------------------------

FAMILIES = [  # (key, title, what it stresses)
    ("transfer", "Threads handing blocks to each other",
     "Blocks freed by a thread other than the one that allocated them, often after it exited"),
    ("sharing", "False sharing",
     "Whether the allocator gives different threads' small blocks neighbouring bytes"),
    ("local", "Thread-local loops and size spectra",
     "Fast paths, size classes and per-thread scaling; no block crosses threads"),
    ("large", "Large blocks", "Blocks of 2 to 20 MiB: mapping, reuse and return of memory"),
    ("programs", "Real programs",
     "Whole programs (tests/programs/*.sh, with their process trees) under LD_PRELOAD"),
]


class Alloc:
    """One allocation workload: bench/alloc/<src>.c built as build/bench/alloc/bench_<src>.
    params: the quick parameter set (also the program's defaults); work: the parameter that
    --full multiplies by FULL_FACTOR; threads(t): the parameters for t threads, with the quick
    and full thread counts (None: single-threaded)."""

    def __init__(self, name, family, src, desc, params, work, threads=None, quick_t=(2,),
                 full_t=(1, 2, 4)):
        self.name, self.family, self.src, self.desc = name, family, src, desc
        self.params, self.work, self.threads = params, work, threads
        self.quick_t, self.full_t = quick_t, full_t

    def rows(self, full):
        """[(row name, argv)] for this mode."""
        counts = (self.full_t if full else self.quick_t) if self.threads else (None,)
        out = []
        for t in counts:
            p = dict(self.params)
            if full:
                p[self.work] *= FULL_FACTOR
            if t is not None:
                p.update(self.threads(t))
            name = self.name if t is None else f"{self.name}-t{t}"
            argv = [os.path.join(ALLOC_BIN, "bench_" + self.src)] + [f"{k}={v}" for k, v in p.items()]
            out.append((name, argv))
        return out


def _t(key):
    return lambda t: {key: t}


ALLOC_WORKLOADS = [
    Alloc("larson", "transfer", "larson",
          "server simulation: chains of short-lived threads, each replacing blocks of the "
          "array it inherited from its predecessor (which then exits)",
          dict(threads=2, rounds=60, ops=80000, slots=5000, min=8, max=1000, seed=4141),
          "rounds", _t("threads")),
    Alloc("xmalloc", "transfer", "xmalloc",
          "producer/consumer through a queue of batches: every free is remote",
          dict(producers=1, consumers=1, objects=6000000, batch=256, queue=64, min=16, max=512,
               seed=7),
          "objects", lambda t: dict(producers=t // 2, consumers=t // 2), (2,), (2, 4)),
    Alloc("mstress", "transfer", "mstress",
          "random malloc/calloc/realloc/free (16 B..256 KiB); half of each thread's blocks "
          "pass to another thread after every round",
          dict(threads=2, rounds=80, ops=40000, slots=2000, seed=11), "rounds", _t("threads")),
    Alloc("rptest", "transfer", "rptest",
          "mixed bursts (16 B..64 KiB) into a FIFO ring, 1/16 reallocated, blocks handed to "
          "the next live thread every 4th iteration",
          dict(threads=2, iterations=40000, burst=32, live=4096, handoff=32, seed=17),
          "iterations", _t("threads")),
    Alloc("sh8bench", "transfer", "sh8bench",
          "batches of 1000 blocks (1..1000 B): half freed locally last-first, half sent to "
          "the next thread and freed there",
          dict(threads=2, iterations=4500, batch=1000, min=1, max=1000, seed=23),
          "iterations", _t("threads"), (2,), (2, 4)),
    Alloc("thread-churn", "transfer", "thread_churn",
          "generations of threads that allocate 2000 blocks, free 3/4, leave 1/4 to the next "
          "generation and exit",
          dict(threads=4, generations=600, objects=2000, seed=31), "generations",
          _t("threads"), (4,), (2, 4)),
    Alloc("test-stress", "transfer", "test_stress",
          "rounds of many short-lived threads: calloc'd blocks checked zero and written "
          "whole, a quarter swapped through shared slots (freed by other threads, often "
          "after their allocator exited); the shape of mimalloc's test-stress",
          dict(threads=16, rounds=10, ops=6000, retain=500, slots=1000, seed=37), "rounds",
          _t("threads"), (16,), (8, 32)),
    Alloc("cache-scratch", "sharing", "cache_scratch",
          "each thread frees a small block the main thread allocated, then allocates, "
          "writes and frees 8 B blocks (passive false sharing)",
          dict(threads=2, iterations=150000, objsize=8, writes=500), "iterations",
          _t("threads"), (2,), (2, 4)),
    Alloc("cache-thrash", "sharing", "cache_thrash",
          "threads allocate, write and free 8 B blocks at once (active false sharing)",
          dict(threads=2, iterations=150000, objsize=8, writes=500), "iterations",
          _t("threads"), (2,), (2, 4)),
    Alloc("glibc-simple", "local", "glibc_simple",
          "one thread: batches of 25..1600 blocks of one size (16 B..4 KiB), allocated then "
          "freed in order",
          dict(reps=350, seed=3), "reps"),
    Alloc("glibc-thread", "local", "glibc_thread",
          "per-thread random replacement in a 1000-block working set (16 B..32 KiB, mostly "
          "small)",
          dict(threads=2, ops=9000000, slots=1000, seed=5), "ops", _t("threads")),
    Alloc("alloc-test", "local", "alloc_test",
          "per-thread random replacement, sizes log-uniform 16 B..64 KiB (every octave "
          "equally often)",
          dict(threads=2, ops=2000000, slots=2048, min=16, max=65536, seed=13), "ops",
          _t("threads")),
    Alloc("sh6bench", "local", "sh6bench",
          "per-thread batches of 1000 blocks (1..1000 B), odd ones freed last-first and "
          "reallocated, then all freed first-first",
          dict(threads=2, iterations=6000, batch=1000, min=1, max=1000, seed=19),
          "iterations", _t("threads")),
    Alloc("malloc-large", "large", "malloc_large",
          "one thread replaces random blocks of 2..20 MiB in an 8-block window, touching "
          "every page",
          dict(ops=800, window=8, min_kib=2048, max_kib=20480, seed=29), "ops"),
]

CHECKSUM = re.compile(rb"checksum=0x[0-9a-f]{16}")


class Workload:
    """One row: kind "alloc" (argv of a bench/alloc program) or "program" (a script)."""

    def __init__(self, name, base, family, kind, argv, desc, env=None):
        self.name, self.base, self.family, self.kind = name, base, family, kind
        self.argv, self.desc, self.env = argv, desc, env or {}


def program_description(path):
    """The comment block after the shebang of a tests/programs script, as one line."""
    lines = []
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("#!"):
                    continue
                if not line.startswith("#"):
                    break
                lines.append(line.lstrip("#").strip())
    except OSError:
        pass
    return " ".join(lines)


def all_workloads(full):
    out = []
    for a in ALLOC_WORKLOADS:
        for name, argv in a.rows(full):
            out.append(Workload(name, a.name, a.family, "alloc", argv, a.desc))
    scale = 3 if full else 1
    progs = sorted(f[:-3] for f in os.listdir(rp.PROGRAMS) if f.endswith(".sh"))
    for p in progs:
        path = os.path.join(rp.PROGRAMS, p + ".sh")
        out.append(Workload(p, p, "programs", "program", ["bash", path],
                            program_description(path), {"SCALE": str(scale)}))
    return out, scale


def select(workloads, only):
    if not only:
        return workloads
    keys = [k.strip() for k in only.split(",") if k.strip()]
    fam_keys = {f[0] for f in FAMILIES}
    chosen, unknown = [], []
    for k in keys:
        hit = [w for w in workloads
               if k in (w.name, w.base, w.family)
               or (k == "alloc" and w.kind == "alloc")
               or (k in ("programs", "program") and w.kind == "program")]
        if not hit and k not in fam_keys:
            unknown.append(k)
        chosen += [w for w in hit if w not in chosen]
    if unknown:
        names = sorted({w.name for w in workloads} | {w.base for w in workloads})
        sys.exit(f"run_suite: unknown workload(s) {', '.join(unknown)}; available: "
                 f"{', '.join(names)}; groups: alloc, programs, {', '.join(sorted(fam_keys))}")
    return [w for w in workloads if w in chosen]  # suite order


# ---- running one workload --------------------------------------------------------------------

def run_argv(argv, lib, extra_env, timeout, isolated):
    """Runs argv once under the allocator lib (None: glibc); returns dict(rc, out, err, wall,
    cpu, rss_kib, why). The measurement is bench/run_programs.py's run_measured(): started as
    `setsid -f /bin/sh -c LAUNCH bench-launch argv...` with this process a child subreaper, so
    the workload is reparented to us and its rusage (itself plus its waited-for descendants)
    comes from os.wait4(); orphans of its tree are reaped and counted too. CPU = ru_utime +
    ru_stime; peak RSS = ru_maxrss (the largest single process). The launcher is dash, not
    bash, because a process's peak RSS survives exec: the floor under a workload's peak RSS is
    then about a dash's (~1 MiB), not a bash's (~3.5 MiB), which matters for the smallest
    workloads. Real programs are argv ["bash", script], so they still run in a bash."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.update(extra_env)
    rc, out, err, wall, cpu, rss, timed_out = rp.run_measured(
        argv, env, timeout, preload=lib, launcher="sh", isolated=isolated)
    err = err.decode(errors="replace")
    why = None
    if timed_out:
        why = f"timed out after {timeout:g} s"
    elif rc != 0:
        why = f"exit status {rc}" + (" (content check failed)" if rc == 3 else "")
        if rc < 0:
            why = f"killed by signal {-rc}"
    elif "ld.so: object" in err and "cannot be preloaded" in err:
        why = "library could not be preloaded"
    return dict(rc=rc, out=out, err=err, wall=wall, cpu=cpu, rss_kib=rss, why=why)


# ---- statistics ------------------------------------------------------------------------------

METRICS = [("wall", "wall s", 2), ("cpu", "CPU s", 2), ("rss", "RSS MiB", 1)]


def med(results, w, a, key):
    return rp.ok_median(results.get((w, a), []), key)


def ratio(results, w, a, key):
    v, b = med(results, w, a, key), med(results, w, BASELINE, key)
    if v is None or b is None:
        return None
    return v / max(b, 1e-9)


def geo_ratio(results, names, a, key):
    """(geometric mean of a's ratios to the baseline over the workloads where both a and the
    baseline have no failed run, how many such workloads). Equal to the ratio of the
    geometric means of the values over those workloads."""
    rs = [ratio(results, w, a, key) for w in names]
    rs = [r for r in rs if r is not None]
    if not rs:
        return None, 0
    return rp.geomean(rs), len(rs)


def nfailed(results, w, a):
    runs = results.get((w, a), [])
    return sum(1 for r in runs if r["why"]), len(runs)


def cell(results, w, a, key, digits):
    k, n = nfailed(results, w, a)
    if k:
        return f"FAILED ({k}/{n})"
    if n == 0:
        return "not run"
    v = med(results, w, a, key)
    if v is None:
        return "-"
    r = ratio(results, w, a, key)
    return f"{v:.{digits}f} ({r:.2f})" if r is not None else f"{v:.{digits}f}"


# ---- report ----------------------------------------------------------------------------------

def machine_line():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem = f"{int(line.split()[1]) / 1048576:.0f} GiB"
                    break
    except OSError:
        pass
    return (f"{platform.node()}: {os.cpu_count()} cores ({model}), {mem} memory, "
            f"Linux {platform.release()}")


def versions_line():
    parts = []
    q = shutil.which("dpkg-query")
    for pkg in ("libc6", "libmimalloc2.0", "libjemalloc2"):
        v = None
        if q:
            r = subprocess.run([q, "-W", "-f=${Version}", pkg], capture_output=True, text=True)
            v = r.stdout.strip() if r.returncode == 0 else None
        parts.append(f"{pkg} {v or '?'}")
    commit = "?"
    try:
        r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            commit = r.stdout.strip()
            d = subprocess.run(["git", "--no-optional-locks", "-C", ROOT, "status",
                                "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True)
            if d.returncode == 0 and d.stdout.strip():
                commit += " with uncommitted changes"
    except OSError:
        pass
    return ", ".join(parts) + f"; wfmm at {commit}"


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}"


def make_report(args, mode, workloads, names, results, notes, elapsed, isolated, plots,
                prog_scale, command, deferred_scope="all", reclaim=None):
    wnames = [w.name for w in workloads]
    alloc_names = [w.name for w in workloads if w.kind == "alloc"]
    prog_names = [w.name for w in workloads if w.kind == "program"]
    L = []
    L.append(f"# wfmm benchmark suite ({mode})")
    L.append("")
    L.append(f"- Machine: {machine_line()}.")
    L.append(f"- Command: `{command}` (in {ROOT}); {time.strftime('%Y-%m-%d %H:%M %Z')}; "
             f"{args.rounds} round(s); {elapsed / 60:.1f} min in all.")
    L.append(f"- Versions: {versions_line()}.")
    L.append("- Allocators: " + "; ".join(
        f"{n} `{lib or '(no LD_PRELOAD)'}`" + "".join(f" {k}={v}" for k, v in extra.items())
        for n, lib, extra in ALLOCATORS) + "."
        + {"all": "", "programs": f" {DEFERRED} ran on the real programs only (--deferred "
                                  "programs): its allocation-workload cells say \"not run\".",
           "none": f" {DEFERRED} was not run (--deferred none)."}[deferred_scope])
    L.append("")
    L.append("Each figure is the median over rounds; the ratio to mimalloc is in parentheses "
             "(lower is better). Wall time runs from spawn to exit; CPU time is user+sys of "
             "the whole process tree; peak RSS is the largest single process's `ru_maxrss`. "
             "Runs are interleaved: every round runs every workload under every allocator, "
             "with both orders rotated per round. FAILED (k/N): k of N runs crashed, timed "
             "out, failed their content check or printed output other than glibc's. "
             "Geometric means are over the workloads where the allocator and mimalloc both "
             "had no failed run; [n/N] marks a mean over fewer than all N. The machine may "
             "have been shared with other work, so single figures are noisy.")
    L.append("")
    if not isolated:
        L.append("**Warning:** no util-linux setsid or no child subreaper: workloads were "
                 "spawned directly, so peak RSS includes this harness's RSS.")
        L.append("")

    # Summary
    L.append("## Summary")
    L.append("")
    L.append("Geometric means of the ratios to mimalloc.")
    L.append("")
    L.append("| | " + " | ".join(names) + " |")
    L.append("|---|" + "---:|" * len(names))
    groups = [("allocation workloads", alloc_names), ("real programs", prog_names),
              ("all workloads", wnames)]
    labels = {"wall": "wall time", "cpu": "CPU time", "rss": "peak RSS"}
    for key, _, _ in METRICS:
        for gl, gn in groups:
            if not gn:
                continue
            cells = []
            for a in names:
                g, n = geo_ratio(results, gn, a, key)
                cells.append(fmt_ratio(g) + (f" [{n}/{len(gn)}]"
                                             if g is not None and n < len(gn) else ""))
            L.append(f"| {labels[key]}, {gl} ({len(gn)}) | " + " | ".join(cells) + " |")
    cells = []
    for a in names:
        rs = [(ratio(results, w, a, "wall"), w) for w in wnames]
        rs = [x for x in rs if x[0] is not None]
        cells.append(f"{max(rs)[0]:.2f} ({max(rs)[1]})" if rs else "-")
    L.append("| worst wall-time ratio | " + " | ".join(cells) + " |")
    cells = []
    for a in names:
        k = sum(nfailed(results, w, a)[0] for w in wnames)
        n = sum(nfailed(results, w, a)[1] for w in wnames)
        cells.append(f"{k}/{n}")
    L.append("| failed runs | " + " | ".join(cells) + " |")
    L.append("")

    # Targets
    L += targets(results, workloads, names)
    L += deferred_section(results, workloads, names, deferred_scope)
    L += reclaim_section(reclaim, os.path.dirname(os.path.abspath(args.out)))

    # Family tables
    for key, title, what in FAMILIES:
        fam = [w.name for w in workloads if w.family == key]
        if not fam:
            continue
        L.append(f"## {title}")
        L.append("")
        extra = f" SCALE={prog_scale}." if key == "programs" else ""
        L.append(f"{what}.{extra}")
        L.append("")
        L.append("| workload | | " + " | ".join(names) + " |")
        L.append("|---|---|" + "---:|" * len(names))
        for w in fam:
            for i, (mk, label, digits) in enumerate(METRICS):
                first = w if i == 0 else ""
                L.append(f"| {first} | {label} | "
                         + " | ".join(cell(results, w, a, mk, digits) for a in names) + " |")
        for i, (mk, label, digits) in enumerate(METRICS):
            cells = []
            for a in names:
                g, n = geo_ratio(results, fam, a, mk)
                if g is None:
                    cells.append("-")
                    continue
                good = [w for w in fam if ratio(results, w, a, mk) is not None]
                gv = rp.geomean(med(results, w, a, mk) for w in good)
                s = f"{gv:.{digits}f} ({g:.2f})"
                if n < len(fam):
                    s += f" [{n}/{len(fam)}]"
                cells.append(s)
            first = "**geometric mean**" if i == 0 else ""
            L.append(f"| {first} | {label} | " + " | ".join(cells) + " |")
        L.append("")

    # Plots
    L.append("## Plots")
    L.append("")
    if plots["error"]:
        L.append(f"No plots: {plots['error']}.")
    else:
        for fn, title in plots["files"]:
            L.append(f"![{title}]({fn})")
            L.append("")
    L.append("")

    # Workloads and parameters
    L.append("## Workloads")
    L.append("")
    L.append("Allocation workloads are our own C programs in `bench/alloc/` (each file's top "
             "comment documents it; `build/bench/alloc/bench_NAME --help` lists its "
             "parameters). Each checks every block's content before freeing it and prints a "
             "checksum of the data it handled. `--full` multiplies the work parameter by "
             f"{FULL_FACTOR} and adds thread counts.")
    L.append("")
    L.append("| workload | family | command | what it does |")
    L.append("|---|---|---|---|")
    for w in workloads:
        if w.kind == "alloc":
            cmd = " ".join([os.path.relpath(w.argv[0], ROOT)] + w.argv[1:])
        else:
            cmd = f"SCALE={w.env.get('SCALE')} bash {os.path.relpath(w.argv[1], ROOT)}"
        L.append(f"| {w.name} | {w.family} | `{cmd}` | {w.desc} |")
    L.append("")

    L.append("## Failed runs")
    L.append("")
    if notes:
        for rnd, w, name, why, tail in notes:
            L.append(f"- round {rnd}, {w} under {name}: {why}"
                     + (f" (stderr: `{tail[:300]}`)" if tail else ""))
    else:
        L.append("None.")
    L.append("")
    return "\n".join(L)


def deferred_section(results, workloads, names, scope):
    """wfmm-deferred against wfmm (immediate free): per-workload ratios and the target."""
    L = [f"## Deferred free ({DEFERRED} ÷ wfmm)", ""]
    if DEFERRED not in names or WFMM not in names or scope == "none":
        return L + ["Not run.", ""]
    rows = [w for w in workloads if nfailed(results, w.name, DEFERRED)[1] > 0]
    L.append(f"`{DEFERRED}` is libwfmm.so with `WFMM_DEFERRED_FREE=1`: free/delete retire the "
             "block, which is reused only once no thread can still read it. Ratios of its "
             "medians to wfmm's (immediate free) on the same workloads, same rounds "
             f"({'every workload' if scope == 'all' else 'the real programs only: --deferred programs'}). "
             "Lower is better. The goal is set on the real-program table: "
             "geometric mean at most 1.05 for time (wall) and 1.10 for peak RSS there, "
             "against MineSweeper's published 5.4% / 11.1% on SPEC CPU2006. The allocation "
             "workloads are malloc/free loops with nothing else to do: their geometric mean "
             "is shown too, beside the same bounds, as the worst case.")
    L.append("")
    L.append("| workload | wall | CPU | peak RSS |")
    L.append("|---|---:|---:|---:|")
    per = {"wall": [], "cpu": [], "rss": []}
    prog = {"wall": [], "cpu": [], "rss": []}
    failed = []
    for w in rows:
        cells = []
        kd, nd = nfailed(results, w.name, DEFERRED)
        kw, _ = nfailed(results, w.name, WFMM)
        for key in ("wall", "cpu", "rss"):
            a, b = med(results, w.name, DEFERRED, key), med(results, w.name, WFMM, key)
            if kd:
                cells.append(f"FAILED ({kd}/{nd})")
            elif kw or a is None or b is None:
                cells.append("- (wfmm FAILED)")
            else:
                r = a / max(b, 1e-9)
                per[key].append(r)
                if w.family == "programs":
                    prog[key].append(r)
                cells.append(f"{r:.2f}")
        if kd:
            failed.append(w.name)
        L.append(f"| {w.name} | " + " | ".join(cells) + " |")
    g = {k: (rp.geomean(v) if v else None) for k, v in per.items()}
    gp = {k: (rp.geomean(v) if v else None) for k, v in prog.items()}
    nprog = sum(1 for w in rows if w.family == "programs")
    cnt = f" [{len(per['wall'])}/{len(rows)}]" if len(per["wall"]) < len(rows) else ""
    L.append(f"| **geometric mean, real programs** [{len(prog['wall'])}/{nprog}] | "
             + " | ".join(fmt_ratio(gp[k]) for k in ("wall", "cpu", "rss")) + " |")
    L.append(f"| geometric mean, every workload{cnt} | "
             + " | ".join(fmt_ratio(g[k]) for k in ("wall", "cpu", "rss")) + " |")
    L.append("")

    def verdict(ok):
        return "MET" if ok else "**MISSED**"
    fail_note = f"; {DEFERRED} FAILED on {', '.join(failed)}, which counts as a miss" if failed else ""
    okw = gp["wall"] is not None and gp["wall"] <= 1.05 and not failed
    okr = gp["rss"] is not None and gp["rss"] <= 1.10 and not failed
    L.append(f"1. Deferred free costs at most 5% more time than wfmm immediate on the real "
             f"programs (geometric mean of wall-time ratios <= 1.05): {fmt_ratio(gp['wall'])}, "
             f"{verdict(okw)}{fail_note}.")
    L.append(f"2. Deferred free costs at most 10% more peak RSS than wfmm immediate on the real "
             f"programs (geometric mean of peak-RSS ratios <= 1.10): {fmt_ratio(gp['rss'])}, "
             f"{verdict(okr)}{fail_note}.")
    okwa = g["wall"] is not None and g["wall"] <= 1.05 and not failed
    okra = g["rss"] is not None and g["rss"] <= 1.10 and not failed
    L.append(f"3. The same bounds over every workload, allocation loops included (the worst "
             f"case, not the issue's target): time {fmt_ratio(g['wall'])} {verdict(okwa)}, "
             f"peak RSS {fmt_ratio(g['rss'])} {verdict(okra)}.")
    L.append("")
    return L


def reclaim_section(reclaim, outdir):
    """The headline of the reclamation part (reclaim.md beside the report)."""
    L = ["## Reclamation (bench/reclaim)", ""]
    if reclaim is None:
        return L + ["Not run (--no-reclaim, or --only without \"reclaim\").", ""]
    rel = os.path.relpath(reclaim["out"], outdir)
    if reclaim.get("error"):
        return L + [f"**FAILED**: {reclaim['error']} (see [{rel}]({rel}) if it was written).", ""]
    L.append(f"Full tables, the stalled-reader time series and the plots: [{rel}]({rel}) "
             f"({reclaim.get('runs', 0)} runs of `bench_reclaim` in "
             f"{reclaim.get('elapsed', 0) / 60:.1f} min, {reclaim.get('failed', 0)} FAILED). "
             "Targets (wfmm):")
    L.append("")
    for i, t in enumerate(reclaim.get("targets", [])):
        L.append(f"{i + 1}. {t}")
    L.append("")
    if reclaim.get("geomean_table"):
        L.append("Geometric mean of the throughput ratio to epoch_based:")
        L.append("")
        L += reclaim["geomean_table"]
        L.append("")
    if reclaim.get("failed_list"):
        L.append("FAILED reclamation runs:")
        L.append("")
        L += [f"- {x}" for x in reclaim["failed_list"]]
        L.append("")
    return L


def targets(results, workloads, names):
    """The wfmm targets of the benchmark issue, each stated met or MISSED with its figures."""
    L = ["## Targets (wfmm)", ""]
    if WFMM not in names or BASELINE not in names:
        return L + ["Not evaluated: the run did not include both wfmm and mimalloc.", ""]
    wn = [w.name for w in workloads]
    failed = [w for w in wn if nfailed(results, w, WFMM)[0]]
    fail_note = (f"; wfmm FAILED on {', '.join(failed)}, which counts as a miss"
                 if failed else "")

    def verdict(ok):
        return "met" if ok else "**MISSED**"

    g, n = geo_ratio(results, wn, WFMM, "wall")
    ok = g is not None and g <= 1.0 and not failed
    L.append(f"1. Geometric mean of wall-time ratios wfmm/mimalloc at most 1.00: "
             f"{fmt_ratio(g)} over {n}/{len(wn)} workloads, {verdict(ok)}{fail_note}.")
    worst = [(ratio(results, w, WFMM, "wall"), w) for w in wn]
    over = sorted([x for x in worst if x[0] is not None and x[0] > 1.25], reverse=True)
    ok = not over and not failed
    over_s = ", ".join(f"{w} {r:.2f}" for r, w in over)
    L.append(f"2. No workload's wall-time ratio above 1.25: {verdict(ok)}"
             + (f" (above: {over_s})" if over else "") + (fail_note if failed else "") + ".")
    g, n = geo_ratio(results, wn, WFMM, "rss")
    ok = g is not None and g <= 1.1 and not failed
    L.append(f"3. Geometric mean of peak-RSS ratios wfmm/mimalloc at most 1.10: "
             f"{fmt_ratio(g)} over {n}/{len(wn)} workloads, {verdict(ok)}{fail_note}.")
    for i, base in ((4, "malloc-large"), (5, "thread-churn")):
        rows = [w.name for w in workloads if w.base == base]
        if not rows:
            L.append(f"{i}. {base}: wfmm CPU time at or below glibc's: not run.")
            continue
        parts, allok = [], True
        for w in rows:
            a, b = med(results, w, WFMM, "cpu"), med(results, w, "glibc", "cpu")
            if a is None or b is None:
                parts.append(f"{w}: FAILED")
                allok = False
            else:
                parts.append(f"{w}: wfmm {a:.2f} s vs glibc {b:.2f} s ({a / max(b, 1e-9):.2f})")
                allok = allok and a <= b
        L.append(f"{i}. {base}: wfmm CPU time at or below glibc's: {verdict(allok)} "
                 f"({'; '.join(parts)}).")
    L.append("")
    L.append("Time targets use wall time, the median of the rounds; the geometric means are "
             "over every workload in this run, allocation workloads and real programs alike.")
    L.append("")
    return L


# ---- plots -----------------------------------------------------------------------------------

def make_plots(outdir, workloads, names, results):
    """Clustered-bar PNGs of ratios to mimalloc; returns dict(files=[(name, title)], error)."""
    res = {"files": [], "error": None}
    gp = shutil.which("gnuplot")
    if not gp:
        res["error"] = "gnuplot is not installed (Debian package gnuplot-nox; scripts/setup installs it)"
        return res
    others = [a for a in names if a != BASELINE]
    alloc = [w.name for w in workloads if w.kind == "alloc"]
    progs = [w.name for w in workloads if w.kind == "program"]
    specs = [("alloc-time-ratio.png", alloc, "wall",
              "Allocation workloads: wall time relative to mimalloc (lower is better)"),
             ("alloc-cpu-ratio.png", alloc, "cpu",
              "Allocation workloads: CPU time relative to mimalloc (lower is better)"),
             ("alloc-rss-ratio.png", alloc, "rss",
              "Allocation workloads: peak RSS relative to mimalloc (lower is better)"),
             ("programs-time-ratio.png", progs, "wall",
              "Real programs: wall time relative to mimalloc (lower is better)")]
    with tempfile.TemporaryDirectory() as td:
        all_others = others
        for fn, rows, key, title in specs:
            if not rows:
                continue
            # Columns with no figure at all (e.g. wfmm-deferred on the allocation workloads in
            # --quick) are left out of the plot.
            others = [a for a in all_others
                      if any(nfailed(results, w, a)[1] for w in rows)]
            data = os.path.join(td, fn + ".dat")
            vals = []
            with open(data, "w") as f:
                for w in rows:
                    rs = [ratio(results, w, a, key) for a in others]
                    vals += [r for r in rs if r is not None]
                    f.write(w + " " + " ".join("?" if r is None else f"{r:.4f}" for r in rs) + "\n")
            lo = min(vals + [1.0]) / 1.3
            hi = max(vals + [1.25]) * 1.3
            out = os.path.join(outdir, fn)
            width = max(900, 70 * len(rows) * len(others) // 2 + 200)
            cols = " , ".join(f"'{data}' using {i + 2}:xtic(1) title '{a}'"
                              for i, a in enumerate(others))
            script = f"""
set terminal pngcairo size {width},520 noenhanced font ',10'
set output '{out}'
set title '{title}'
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 2
set yrange [{lo:.4f}:{hi:.4f}]
set ylabel 'ratio to mimalloc (log scale); failed runs have no bar'
set xtics rotate by 30 right nomirror
set grid ytics
set key outside top center horizontal
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb 'black'
set arrow from graph 0, first 1.25 to graph 1, first 1.25 nohead dt 2 lc rgb 'red'
set label 'mimalloc = 1' at graph 0.005, first 1 left offset 0,-0.7
set label 'target limit 1.25' at graph 0.005, first 1.25 left offset 0,0.7 tc rgb 'red'
plot {cols}
"""
            sp = os.path.join(td, fn + ".gp")
            with open(sp, "w") as f:
                f.write(script)
            r = subprocess.run([gp, sp], capture_output=True, text=True)
            if r.returncode != 0 or not os.path.exists(out):
                res["error"] = f"gnuplot failed on {fn}: {r.stderr.strip()[:300]}"
                return res
            res["files"].append((fn, title))
    return res


# ---- main ------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true")
    g.add_argument("--full", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="")
    # Default: bench/results/report.md for --quick, bench/results/full/report.md for --full
    # (reclaim.md and the plots go beside it), so one run never overwrites the other.
    ap.add_argument("--out", default=None)
    ap.add_argument("--publish", action="store_true")
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--deferred", choices=["all", "programs", "none"], default=None)
    ap.add_argument("--no-reclaim", action="store_true")
    args = ap.parse_args()
    if args.rounds < 1:
        sys.exit("run_suite: --rounds must be at least 1")
    full = args.full
    mode = "full" if full else "quick"
    if args.out is None:
        # Day-to-day runs stay out of git (bench/out/); --publish replaces the tracked figures.
        args.out = os.path.join(ROOT, "bench", "results" if args.publish else "out",
                                *(("full",) if full else ()), "report.md")
    timeout = args.timeout or (1200.0 if full else 300.0)
    deferred_scope = args.deferred or DEFERRED_DEFAULT[mode]
    workloads, prog_scale = all_workloads(full)
    only_keys = [k.strip() for k in args.only.split(",") if k.strip()]
    do_reclaim = not args.no_reclaim and not args.list and (not only_keys or "reclaim" in only_keys)
    rest = [k for k in only_keys if k != "reclaim"]
    workloads = select(workloads, ",".join(rest)) if (rest or not only_keys) else []
    if args.list:
        for w in workloads:
            cmd = (shlex.join([os.path.relpath(w.argv[0], ROOT)] + w.argv[1:]) if w.kind == "alloc"
                   else f"SCALE={w.env['SCALE']} bash {os.path.relpath(w.argv[1], ROOT)}")
            print(f"{w.name:18} {w.family:9} {cmd}")
        return 0

    names = [a[0] for a in ALLOCATORS]
    missing = {n: lib for n, lib, _ in ALLOCATORS if lib and not os.path.exists(lib)}
    for n, lib in missing.items():
        print(f"run_suite: {n} library {lib} is missing; its runs are FAILED", file=sys.stderr)
    absent = sorted({w.argv[0] for w in workloads if w.kind == "alloc" and not os.path.exists(w.argv[0])})
    for b in absent:
        print(f"run_suite: {b} is not built (ninja -C build bench_workloads); its runs are FAILED",
              file=sys.stderr)
    isolated = shutil.which("setsid") is not None and os.path.exists("/bin/sh") \
        and rp.become_subreaper()
    if not isolated:
        print("run_suite: no setsid or no child subreaper: spawning directly (peak RSS then "
              "includes this harness's RSS)", file=sys.stderr)
    command = os.environ.get("BENCH_COMMAND") or ("python3 " + shlex.join(sys.argv))
    outdir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(outdir, exist_ok=True)

    # The reclamation part first (bench/reclaim/run_reclaim.py): reclaim.md beside the report.
    reclaim = None
    if do_reclaim:
        reclaim = run_reclaim(mode, outdir, command)
    if not workloads:
        publish_docs_page(args)
        return 1 if reclaim and reclaim.get("rc") else 0

    def runs_on(w, name):
        if name != DEFERRED:
            return True
        return deferred_scope == "all" or (deferred_scope == "programs" and w.kind == "program")

    results = {(w.name, a): [] for w in workloads for a in names}
    notes = []
    first_ref = {}  # glibc's output of each workload in its first successful round
    total = args.rounds * sum(1 for w in workloads for a in names if runs_on(w, a))
    done = 0
    t_start = time.time()
    for r in range(args.rounds):
        round_runs = {}
        for w in rp.rotate(workloads, r):
            for name, lib, extra in rp.rotate(ALLOCATORS, r):
                if not runs_on(w, name):
                    continue
                done += 1
                spent = time.time() - t_start
                eta = f", about {spent / (done - 1) * (total - done + 1) / 60:.1f} min left" \
                    if done > 1 else ""
                print(f"[{done}/{total}] round {r + 1}/{args.rounds}: {w.name} under {name} "
                      f"({total - done} runs remain after this{eta})", file=sys.stderr, flush=True)
                if name in missing:
                    res = dict(rc=None, out=b"", err="", wall=0.0, cpu=0.0, rss_kib=0,
                               why=f"library {missing[name]} is missing")
                elif w.kind == "alloc" and w.argv[0] in absent:
                    res = dict(rc=None, out=b"", err="", wall=0.0, cpu=0.0, rss_kib=0,
                               why=f"{os.path.relpath(w.argv[0], ROOT)} is not built")
                else:
                    env = dict(extra)
                    env.update(w.env)
                    try:
                        res = run_argv(w.argv, lib, env, timeout, isolated)
                    except (OSError, RuntimeError) as e:
                        res = dict(rc=None, out=b"", err="", wall=0.0, cpu=0.0, rss_kib=0,
                                   why=f"could not run: {e}")
                if not res["why"] and w.kind == "alloc" and not CHECKSUM.search(res["out"]):
                    res["why"] = "no checksum line in the output"
                round_runs[(w.name, name)] = res
        for w in workloads:
            ref = round_runs.get((w.name, REFERENCE))
            if ref is not None and not ref["why"]:
                if w.name not in first_ref:
                    first_ref[w.name] = ref["out"]
                elif ref["out"] != first_ref[w.name]:
                    ref["why"] = ("output differs from its first round: "
                                  + rp.first_diff(ref["out"], first_ref[w.name]))
            for name in names:
                if (w.name, name) not in round_runs:
                    continue
                res = round_runs[(w.name, name)]
                if not res["why"] and name != REFERENCE:
                    if ref is None or ref["why"]:
                        res["why"] = f"no {REFERENCE} output to compare with (it failed)"
                    elif res["out"] != ref["out"]:
                        res["why"] = "output differs: " + rp.first_diff(res["out"], ref["out"])
                if res["why"]:
                    tail = res["err"].replace("`", "'").strip().splitlines()[-3:]
                    notes.append((r + 1, w.name, name, res["why"], " / ".join(tail)))
                    print(f"  FAILED: round {r + 1} {w.name} under {name}: {res['why']}",
                          file=sys.stderr, flush=True)
                res["rss"] = res["rss_kib"] / 1024.0
                results[(w.name, name)].append(res)
    elapsed = time.time() - t_start

    plots = make_plots(outdir, workloads, names, results)
    text = make_report(args, mode, workloads, names, results, notes, elapsed, isolated, plots,
                       prog_scale, command, deferred_scope, reclaim)
    with open(args.out, "w") as f:
        f.write(text)
    # Raw figures for later analysis (bench/results/raw/ is not tracked).
    raw = os.path.join(outdir, "raw")
    try:
        os.makedirs(raw, exist_ok=True)
        with open(os.path.join(raw, f"suite-{mode}.json"), "w") as f:
            json.dump({"command": command, "mode": mode, "rounds": args.rounds,
                       "runs": [{"workload": w, "allocator": a, "round": i + 1,
                                 "wall": x["wall"], "cpu": x["cpu"], "rss_kib": x["rss_kib"],
                                 "failed": x["why"]}
                                for (w, a), xs in results.items() for i, x in enumerate(xs)]},
                      f, indent=1)
    except OSError:
        pass
    print(f"run_suite: {total} runs in {elapsed / 60:.1f} min; report {args.out}",
          file=sys.stderr)
    print(text)
    if reclaim is not None:
        print(f"run_suite: reclamation report {reclaim['out']} ({reclaim.get('elapsed', 0) / 60:.1f} min)",
              file=sys.stderr)
    publish_docs_page(args)
    return 1 if notes or (reclaim and reclaim.get("rc")) else 0


def publish_docs_page(args):
    """--publish: docs/benchmarks.md again from everything now in bench/results/ (the reports
    of this run and the last published ones of the other mode). Only then is a tracked file
    written; a report sent elsewhere with --out leaves the page alone."""
    results = os.path.join(ROOT, "bench", "results")
    if not args.publish or not os.path.abspath(args.out).startswith(results + os.sep):
        return
    import publish_docs  # noqa: E402  (bench/publish_docs.py, beside this file)
    out = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(out, "w", encoding="utf-8") as f:
        f.write(publish_docs.generate(results, out))
    print(f"run_suite: wrote {out} from {results}", file=sys.stderr)


def run_reclaim(mode, outdir, command):
    """Runs bench/reclaim/run_reclaim.py (progress on our stderr); returns its summary dict
    (targets, geomean table, out, elapsed, failed, rc) or a dict with rc and error."""
    out = os.path.join(outdir, "reclaim.md")
    fd, summ = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    cmd = [sys.executable, os.path.join(ROOT, "bench", "reclaim", "run_reclaim.py"),
           f"--{mode}", "--out", out, "--summary", summ, "--command", command]
    print(f"run_suite: reclamation part: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.time()
    rc = 1
    try:
        rc = subprocess.run(cmd).returncode
        with open(summ) as f:
            res = json.load(f)
    except (OSError, ValueError) as e:
        res = {"error": f"bench/reclaim/run_reclaim.py exited {rc} without a summary ({e})",
               "targets": [], "geomean_table": [], "failed_list": [], "failed": 1, "runs": 0}
        rc = rc or 1
    finally:
        try:
            os.unlink(summ)
        except OSError:
            pass
    res.setdefault("out", out)
    res.setdefault("elapsed", time.time() - t0)
    res["rc"] = rc
    return res


if __name__ == "__main__":
    sys.exit(main())
