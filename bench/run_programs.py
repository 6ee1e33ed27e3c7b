#!/usr/bin/env python3
"""Runs the real-program workloads in tests/programs/*.sh under glibc, mimalloc, jemalloc and
wfmm (LD_PRELOAD), interleaved round by round, and prints a Markdown report of medians over
rounds: wall time, CPU time (user+sys of the whole process tree) and peak RSS (largest single
process), each with the ratio to mimalloc and a geometric-mean row.

A run is FAILED when its exit status is non-zero, when it times out, when the dynamic loader
could not preload the library, or when its stdout differs from the glibc run of the same
workload in the same round. Failed runs are shown in the tables and listed below them.

usage: bench/run_programs.py [--rounds N] [--scale N] [--only NAME[,NAME]] [--out FILE]
                             [--timeout S]

  --rounds N     rounds; every round runs every workload under every allocator (default 3)
  --scale N      exported as SCALE to the workloads, multiplying their work (default 2)
  --only NAMES   comma-separated workload names (file names without .sh), e.g. sqlite3,git
  --out FILE     where the report is written as well as stdout
                 (default bench/out/programs.md, ignored by git; bench/results/ holds the
                 published one)
  --timeout S    per-run limit in seconds; a run over it is killed and FAILED (default 600)

Progress goes to stderr; the exit status is 1 when any run FAILED. Python 3 standard library
only (Linux: uses os.wait4, os.pidfd_open and prctl through ctypes).
"""
import argparse
import ctypes
import os
import platform
import selectors
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBDIR = "/usr/lib/x86_64-linux-gnu"
PROGRAMS = os.path.join(ROOT, "tests", "programs")
BASELINE = "mimalloc"   # ratios are to this allocator
REFERENCE = "glibc"     # outputs are compared with this allocator's output in the same round

# (name, LD_PRELOAD path or None, extra environment). A variant is one more line, e.g.
#   ("wfmm-deferred", os.path.join(ROOT, "build", "libwfmm.so"), {"WFMM_DEFERRED_FREE": "1"}),
ALLOCATORS = [
    ("glibc", None, {}),
    ("mimalloc", f"{LIBDIR}/libmimalloc.so.2", {}),
    ("jemalloc", f"{LIBDIR}/libjemalloc.so.2", {}),
    ("wfmm", os.path.join(ROOT, "build", "libwfmm.so"), {}),
]

# How CPU time and peak RSS are measured
# --------------------------------------
# The numbers come from os.wait4() on the workload script's process: on Linux its rusage is
# that of the process itself *plus* all descendants that were waited for (the kernel folds a
# reaped child's own and its children's totals into its parent's "children" counters).
#   * CPU time = ru_utime + ru_stime: summed over the script and its reaped descendants, i.e.
#     the whole process tree (bash, every pipeline member, git subcommands, cc1plus, ...).
#   * ru_maxrss is NOT summed: it is max(the process's own peak, its reaped children's
#     peaks), i.e. the peak RSS of the largest single process in the tree (KiB on Linux).
# getrusage(RUSAGE_CHILDREN) deltas would do for CPU time but not for RSS: its ru_maxrss is a
# running maximum over every child this process ever reaped, so a run that peaks lower than
# an earlier run shows no change at all. Hence one wait4 per run.
#
# Two Linux details shape how the script is started:
#  1. A process's ru_maxrss survives exec, and exec folds in the peak RSS of the address space
#     it replaces. A child that Python forks/vforks starts with (a copy of) this harness's
#     address space, so a script spawned directly by this process would report at least the
#     harness's own RSS (15 MiB or more), swamping small workloads. So the script is started
#     as `setsid -f bash -c '...; exec "$@"' bench-launch bash SCRIPT`: util-linux setsid
#     (a small C program) forks the `bash -c` and exits at once without waiting for it; that
#     bash, whose address space is just a small bash, execs `bash SCRIPT` (same pid, which it
#     first writes to a pipe). See run_measured() and LAUNCHERS below. The floor is then about a bash's RSS (~3 MiB), as under /usr/bin/time.
#  2. This process makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so the
#     orphaned script is reparented to us and we can wait4() it. The same catches any other
#     process of the tree whose parent exits without waiting for it (e.g. a detached
#     `git gc --auto`): those are reaped here after the script exits, their CPU time added
#     and their peak RSS included in the maximum.
# Wall time runs from just before the spawn until the script and all such orphans are reaped.
# If setsid is missing or prctl fails, the script is spawned directly (its peak RSS then
# includes the harness's RSS; the report says so).

PR_SET_CHILD_SUBREAPER = 36

# The launchers: the shell that `setsid -f` forks reports its pid, sets the allocator and
# execs the workload ("$@"). Peak RSS survives exec, so the floor under a workload's peak RSS
# is about the launcher shell's RSS.
#  "bash": reports the pid through a pipe on fd $BENCH_PIDFD (closed before the exec), so the
#          workload's stdout is untouched. Used for the tests/programs scripts, which run in a
#          bash anyway (~3 MiB floor).
#  "sh":   /bin/sh (dash) prints the pid as the first line of stdout, which the harness strips.
#          dash, not bash, keeps the floor at about a dash's RSS (~1 MiB), not a bash's
#          (~3.5 MiB), which matters for the smallest workloads (bench/run_suite.py).
LAUNCHERS = {
    "bash": ["bash", "-c",
             'echo $$ >&"$BENCH_PIDFD"; fd=$BENCH_PIDFD; '
             'if [ -n "$BENCH_PRELOAD" ]; then export LD_PRELOAD="$BENCH_PRELOAD"; fi; '
             'unset BENCH_PIDFD BENCH_PRELOAD; exec "$@" {fd}>&-', "bench-launch"],
    "sh": ["/bin/sh", "-c",
           'echo $$; if [ -n "$BENCH_PRELOAD" ]; then export LD_PRELOAD="$BENCH_PRELOAD"; fi; '
           'unset BENCH_PRELOAD; exec "$@"', "bench-launch"],
}


def become_subreaper():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def spawn(argv, env, preload, isolated, launcher, cwd):
    """Starts argv with stdout/stderr on pipes; returns (pid, stdout, stderr, early stdout).
    isolated: through `setsid -f LAUNCHER` with this process a subreaper (see above); else
    directly. The workload is a session and process-group leader either way."""
    env = dict(env)
    if not isolated:
        if preload:
            env["LD_PRELOAD"] = preload
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, cwd=cwd, start_new_session=True)
        p.returncode = 0  # reaped by us with os.wait4; keep Popen from waiting
        return p.pid, p.stdout, p.stderr, b""
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}")
    if preload:
        env["BENCH_PRELOAD"] = preload
    cmd = ["setsid", "-f"] + LAUNCHERS[launcher] + list(argv)
    early = b""
    if launcher == "bash":
        r, w = os.pipe()
        env["BENCH_PIDFD"] = str(w)
        try:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=env, cwd=cwd, pass_fds=(w,))
        finally:
            os.close(w)
        with os.fdopen(r, "rb") as f:
            line = f.read()
        os.waitpid(p.pid, 0)  # setsid itself exits at once
        p.returncode = 0
        ok = bool(line.strip())
    else:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, cwd=cwd)
        os.waitpid(p.pid, 0)  # setsid itself exits at once
        p.returncode = 0
        # The first line of stdout is the workload's pid (the sh that execs it).
        while b"\n" not in early:
            data = os.read(p.stdout.fileno(), 4096)
            if not data:
                break
            early += data
        line, _, early = early.partition(b"\n")
        ok = line.strip().isdigit()
    if not ok:
        p.stdout.close()
        p.stderr.close()
        raise RuntimeError(f"could not start the workload through setsid -f {launcher}")
    return int(line), p.stdout, p.stderr, early


def run_measured(argv, env, timeout, preload=None, launcher="bash", isolated=True, cwd=ROOT):
    """The one measurement loop of the benchmarks (also used by bench/run_suite.py).

    Runs argv (a str is a bash script: ["bash", argv]) with exactly the environment env,
    LD_PRELOAD=preload (None: none), started as described at the top of this file through
    the launcher shell ("bash" or "sh", see LAUNCHERS) when isolated, else directly.
    Drains stdout/stderr until EOF, kills the process group at the timeout, reaps the
    workload with os.wait4 and then (isolated) the orphans of its tree.
    Returns (exit status, stdout bytes, stderr bytes, wall s, cpu s, peak RSS KiB, timed_out);
    the exit status is os.waitstatus_to_exitcode's (negative: killed by that signal).
    Raises OSError or RuntimeError when the workload could not be started."""
    if isinstance(argv, str):
        argv = ["bash", argv]
    t0 = time.perf_counter()
    pid, stdout, stderr, early = spawn(argv, env, preload, isolated, launcher, cwd)
    pgid = pid  # setsid (or start_new_session) made it a session and group leader
    deadline = t0 + timeout
    timed_out = False
    chunks = {stdout: [early], stderr: []}
    pidfd = os.pidfd_open(pid)  # readable once the workload has exited (not yet reaped)
    sel = selectors.DefaultSelector()
    for f in chunks:
        sel.register(f, selectors.EVENT_READ)
    sel.register(pidfd, selectors.EVENT_READ)
    exited = False
    # Drain stdout/stderr until EOF and wait for the exit, whichever order they come in.
    while len(sel.get_map()) > 0:
        now = time.perf_counter()
        if now >= deadline:
            if not timed_out:
                timed_out = True
                kill_group(pgid)
            elif now >= deadline + 10:
                break  # something outside the process group holds the pipes open
        for key, _ in sel.select(timeout=max(deadline - now, 0.5)):
            if key.fileobj == pidfd:
                exited = True
                sel.unregister(pidfd)
                continue
            data = os.read(key.fd, 1 << 16)
            if data:
                chunks[key.fileobj].append(data)
            else:
                sel.unregister(key.fileobj)
    sel.close()
    for f in chunks:
        f.close()
    os.close(pidfd)
    if not exited:  # only after the give-up above; the group has been killed
        kill_group(pgid)
    # Reap the workload: rusage of it and of its waited-for descendants.
    _, status, ru = os.wait4(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    cpu = ru.ru_utime + ru.ru_stime
    rss = ru.ru_maxrss
    # Reap orphans of the tree that were reparented to us (see the comment at the top). Not
    # isolated, we are no subreaper: orphans go to init and there is nothing to reap here.
    while isolated:
        try:
            opid, _, ru = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break  # no children left
        if opid == 0:  # orphans still running
            now = time.perf_counter()
            if now >= deadline and not timed_out:
                timed_out = True
                kill_group(pgid)
            elif now >= deadline + 10:
                break  # orphans in another session; leave them (a later run would count them)
            time.sleep(0.005)
            continue
        cpu += ru.ru_utime + ru.ru_stime
        rss = max(rss, ru.ru_maxrss)
    wall = time.perf_counter() - t0
    return rc, b"".join(chunks[stdout]), b"".join(chunks[stderr]), wall, cpu, rss, timed_out


def run_once(script, lib, extra_env, scale, timeout, isolated):
    """Runs one workload script; returns dict(rc, out, err, wall, cpu, rss_kib, why)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env["SCALE"] = str(scale)
    env.update(extra_env)
    rc, out, err, wall, cpu, rss, timed_out = run_measured(
        ["bash", script], env, timeout, preload=lib, launcher="bash", isolated=isolated)
    err = err.decode(errors="replace")
    why = None
    if timed_out:
        why = f"timed out after {timeout:g} s"
    elif rc != 0:
        why = f"exit status {rc}"
    elif "ld.so: object" in err and "cannot be preloaded" in err:
        why = "library could not be preloaded"
    return dict(rc=rc, out=out, err=err, wall=wall, cpu=cpu, rss_kib=rss, why=why)


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def rotate(xs, k):
    k %= len(xs)
    return xs[k:] + xs[:k]


def first_diff(a, b):
    la, lb = a.decode(errors="replace").splitlines(), b.decode(errors="replace").splitlines()
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else "<missing>"
        y = lb[i] if i < len(lb) else "<missing>"
        if x != y:
            return f"line {i + 1}: got {x[:80]!r}, {REFERENCE} printed {y[:80]!r}"
    return "outputs differ"


def fmt_cell(v, base, digits):
    if base:
        return f"{v:.{digits}f} ({v / base:.2f})"
    return f"{v:.{digits}f}"


def table(title, unit_note, key, digits, workloads, names, results):
    """One Markdown table of medians of results[(w, a)][i][key] with ratios to BASELINE."""
    lines = [f"### {title}", "", unit_note, ""]
    lines.append("| workload | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for w in workloads:
        base = ok_median(results[(w, BASELINE)], key) if BASELINE in names else None
        cells = []
        for a in names:
            runs = results[(w, a)]
            nfail = sum(1 for r in runs if r["why"])
            if nfail:
                cells.append(f"FAILED ({nfail}/{len(runs)})")
            else:
                cells.append(fmt_cell(ok_median(runs, key), base, digits))
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    # Geometric mean per column over the workloads where both this allocator and the baseline
    # have no failed run, so the mean ratio equals the ratio of the mean values. When that is
    # not every workload, the cell says how many ([n/N]): such a column's mean value is then
    # not comparable with the others'.
    cells = []
    for a in names:
        good = [w for w in workloads if ok_median(results[(w, a)], key) is not None
                and (BASELINE not in names or ok_median(results[(w, BASELINE)], key) is not None)]
        if not good:
            cells.append("-")
            continue
        gm = geomean(ok_median(results[(w, a)], key) for w in good)
        gb = geomean(ok_median(results[(w, BASELINE)], key) for w in good) \
            if BASELINE in names else None
        cell = fmt_cell(gm, gb, digits)
        if len(good) < len(workloads):
            cell += f" [{len(good)}/{len(workloads)}]"
        cells.append(cell)
    lines.append("| **geometric mean** | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def geomean(xs):
    return statistics.geometric_mean([max(x, 1e-9) for x in xs])  # a 0 would raise


def ok_median(runs, key):
    """Median over rounds, or None when any round failed (or there are no runs)."""
    if not runs or any(r["why"] for r in runs):
        return None
    return statistics.median(r[key] for r in runs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "programs.md"))
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    if args.rounds < 1 or args.scale < 1:
        sys.exit("run_programs: --rounds and --scale must be at least 1")

    available = sorted(f[:-3] for f in os.listdir(PROGRAMS) if f.endswith(".sh"))
    if args.only:
        workloads = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in workloads if w not in available]
        if unknown:
            sys.exit(f"run_programs: unknown workload(s) {', '.join(unknown)}; "
                     f"available: {', '.join(available)}")
    else:
        workloads = available
    names = [a[0] for a in ALLOCATORS]
    if len(set(names)) != len(names):
        sys.exit("run_programs: duplicate allocator names")
    missing = {name: lib for name, lib, _ in ALLOCATORS if lib and not os.path.exists(lib)}
    for name, lib in missing.items():
        print(f"run_programs: {name} library {lib} is missing; its runs are FAILED",
              file=sys.stderr)
    isolated = shutil.which("setsid") is not None and become_subreaper()
    if not isolated:
        print("run_programs: no util-linux setsid, or could not become a child subreaper: "
              "spawning directly, so peak RSS includes this harness's RSS and orphans are not "
              "counted", file=sys.stderr)

    command = "python3 " + shlex.join(sys.argv)
    cwd = os.getcwd()
    results = {(w, a): [] for w in workloads for a in names}
    notes = []  # (round, workload, allocator, reason, stderr tail)
    total = args.rounds * len(workloads) * len(ALLOCATORS)
    done = 0
    t_start = time.time()
    for r in range(args.rounds):
        round_runs = {}
        # Workload-major (a workload's allocators run back to back, under similar machine
        # load); both orders rotate per round so every allocator takes every position.
        for w in rotate(workloads, r):
            for name, lib, extra in rotate(ALLOCATORS, r):
                done += 1
                print(f"round {r + 1}/{args.rounds}: {w} under {name} ({done}/{total})",
                      file=sys.stderr, flush=True)
                if name in missing:
                    res = dict(rc=None, out=b"", err="", wall=0.0, cpu=0.0, rss_kib=0,
                               why=f"library {missing[name]} is missing")
                else:
                    try:
                        res = run_once(os.path.join(PROGRAMS, w + ".sh"), lib, extra,
                                       args.scale, args.timeout, isolated)
                    except (OSError, RuntimeError) as e:
                        res = dict(rc=None, out=b"", err="", wall=0.0, cpu=0.0, rss_kib=0,
                                   why=f"could not run: {e}")
                round_runs[(w, name)] = res
        # Compare every run's stdout with glibc's in this round, once the round is complete.
        for w in workloads:
            ref = round_runs.get((w, REFERENCE))
            for name in names:
                res = round_runs[(w, name)]
                if not res["why"] and name != REFERENCE:
                    if ref is None or ref["why"]:
                        res["why"] = f"no {REFERENCE} output to compare with (it failed)"
                    elif res["out"] != ref["out"]:
                        res["why"] = "output differs: " + first_diff(res["out"], ref["out"])
                if res["why"]:
                    tail = res["err"].replace("`", "'").strip().splitlines()[-3:]
                    notes.append((r + 1, w, name, res["why"], " / ".join(tail)))
                    print(f"  FAILED: round {r + 1} {w} under {name}: {res['why']}",
                          file=sys.stderr, flush=True)
                results[(w, name)].append(res)
    elapsed = time.time() - t_start

    lines = []
    lines.append(f"Machine: {platform.node()} ({os.cpu_count()} cores), "
                 f"{time.strftime('%Y-%m-%d %H:%M')}; command: `{command}` (in {cwd}); "
                 f"SCALE={args.scale}, {args.rounds} round(s), {elapsed:.0f} s in all.")
    lines.append("")
    lines.append("Medians over rounds; ratio to mimalloc in parentheses (lower is better). "
                 "Runs were interleaved: every round ran every workload under every allocator, "
                 "the order rotated per round. A cell is FAILED (k/N) when k of its N runs "
                 f"exited non-zero, timed out, or printed output different from {REFERENCE}'s "
                 "in the same round; the runs are listed at the end. Geometric means are over "
                 "the workloads where the allocator and mimalloc had no failed run; [n/N] marks "
                 "a mean over fewer than all N workloads.")
    lines.append("")
    envs = [f"{n}: `{lib or '(no LD_PRELOAD)'}`"
            + ("".join(f" {k}={v}" for k, v in extra.items()) if extra else "")
            for n, lib, extra in ALLOCATORS]
    lines.append("Allocators: " + "; ".join(envs) + ".")
    lines.append("")
    if not isolated:
        lines.append("**Warning:** workloads were spawned directly by the harness (no setsid or "
                     "no child subreaper), so peak RSS includes the harness's own RSS and "
                     "orphaned processes were not counted.")
        lines.append("")
    for res_list in results.values():
        for res in res_list:
            res["rss"] = res["rss_kib"] / 1024.0
    lines += table("Wall time", "Seconds, from spawn until the script (and its process tree) "
                   "exited.", "wall", 2, workloads, names, results)
    lines += table("CPU time", "Seconds of user+sys CPU, summed over the whole process tree.",
                   "cpu", 2, workloads, names, results)
    lines += table("Peak RSS", "MiB: ru_maxrss of the largest single process in the tree.",
                   "rss", 1, workloads, names, results)
    lines.append("### Failed runs")
    lines.append("")
    if notes:
        for rnd, w, name, why, tail in notes:
            lines.append(f"- round {rnd}, {w} under {name}: {why}"
                         + (f" (stderr: `{tail[:300]}`)" if tail else ""))
    else:
        lines.append("None.")
    text = "\n".join(lines)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 1 if notes else 0


if __name__ == "__main__":
    sys.exit(main())
