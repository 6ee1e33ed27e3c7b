#!/usr/bin/env python3
"""Writes docs/benchmarks.md from the published benchmark reports in bench/results/ (the
tracked figures): the summary tables, goals and plots of the quick and full suite reports,
the reclamation reports and the micro benchmark, with links to every full report, plus the
hand-written reading of the figures in bench/notes.md. `./scripts/bench --publish` runs it
after writing the reports; run it alone to regenerate the page from the reports already
there (no benchmark runs):

  python3 bench/publish_docs.py [--results DIR] [--out FILE] [--check]

--check writes nothing and exits 1 when FILE differs from what would be written (FILE is then
stale: someone edited it by hand or published reports without regenerating it).
Python 3 standard library only.
"""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def sections(text):
    """{'## title' heading text: [lines]} for the level-2 sections of a report, plus
    '' for what comes before the first one."""
    out, cur = {"": []}, ""
    for line in text.split("\n"):
        if line.startswith("## "):
            cur = line[3:].strip()
            out[cur] = []
        else:
            out[cur].append(line)
    return out


def find(secs, prefix):
    for k, v in secs.items():
        if k.startswith(prefix):
            return v
    return None


def relink(lines, report_dir, out_dir):
    """Links and images relative to the report's folder, made relative to the output's."""
    def fix(m):
        target = m.group(2)
        if re.match(r"^[a-z]+:|^#|^/", target):
            return m.group(0)
        path = os.path.normpath(os.path.join(report_dir, target))
        return f"{m.group(1)}({os.path.relpath(path, out_dir)})"
    return [re.sub(r"(!?\[[^\]]*\])\(([^)\s]+)\)", fix, line) for line in lines]


def clean(lines):
    """Drops project-internal wording: issue numbers, 'targets' of the work log."""
    out = []
    for line in lines:
        line = re.sub(r"\s*\(issue \d+\)", "", line)
        line = line.replace("the issue's target", "the goal")
        line = re.sub(r"\b([Tt])arget(s?)\b", lambda m: ("G" if m.group(1) == "T" else "g")
                      + "oal" + m.group(2), line)
        # Where the run was made on the machine says nothing to a reader.
        line = re.sub(r" \(in /[^;)]*(; ([^)]*))?\)", lambda m: f" ({m.group(2)})" if m.group(2)
                      else "", line)
        out.append(line)
    return out


def trim(lines):
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def header_bullets(secs):
    """The '- Machine: ...', '- Command: ...', '- Versions: ...' lines of a report."""
    return clean([l for l in secs[""] if re.match(r"^- (Machine|Command|Versions):", l)])


def suite_part(title, path, out_dir):
    text = read(path)
    if text is None:
        return [f"## {title}", "", f"No report at `{os.path.relpath(path, ROOT)}` yet.", ""]
    rdir = os.path.dirname(path)
    s = sections(text)
    rel = os.path.relpath(path, out_dir)
    L = [f"## {title}", ""]
    L += header_bullets(s) + [f"- Full report: [{os.path.relpath(path, ROOT)}]({rel}) "
                              "(every workload's times, peak RSS, failed runs, descriptions)."]
    L.append("")
    parts = [("Summary", "### Geometric means of the ratios to mimalloc (lower is better)"),
             ("Targets", "### Goals (wfmm)"),
             ("Deferred free", "### Deferred free: wfmm-deferred ÷ wfmm")]
    for key, head in parts:
        body = find(s, key)
        if body is None:
            continue
        body = trim(clean(relink(body, rdir, out_dir)))
        if key == "Summary":
            body = [l for l in body if not l.startswith("Geometric means of the ratios")]
        if key == "Deferred free":
            # The per-workload rows stay in the report; here the means and the verdicts.
            body = [l for l in body if l.startswith("| workload ")
                    or not re.match(r"^\| [a-z0-9][a-z0-9+-]* \|", l)]
        L += [head, ""] + trim(body) + [""]
    plots = find(s, "Plots")
    if plots:
        L += ["### Plots", ""] + trim(relink(plots, rdir, out_dir)) + [""]
    return L


def reclaim_part(path, out_dir):
    text = read(path)
    if text is None:
        return []
    rdir = os.path.dirname(path)
    s = sections(text)
    L = header_bullets(s)
    L.append(f"- Full report: [{os.path.relpath(path, ROOT)}]({os.path.relpath(path, out_dir)}) "
             "(every row, the stalled-reader series, all plots).")
    L.append("")
    summ = find(s, "Summary")
    if summ:
        L += ["Geometric mean of the throughput ratio to epoch_based (higher is better; `ebr` "
              "epoch_based, `nebr` new_epoch_based, `qsbr` quiescent_state_based, `hp` "
              "hazard_pointer, `he` hazard_eras, `stamp` stamp_it, `leak` never frees, "
              "`urcu_*` liburcu's hash table):", ""] + trim(clean(summ)) + [""]
    goals = find(s, "Targets")
    if goals:
        L += ["Goals:", ""] + trim(clean(relink(goals, rdir, out_dir))) + [""]
    plots = find(s, "Plots")
    if plots:
        keep = [l for l in relink(plots, rdir, out_dir)
                if "stalled reader" in l or "0/50/50, 1,000 keys: throughput" in l]
        L += [l for l in keep for l in (l, "")]
    return L


def generate(results, out):
    out_dir = os.path.dirname(os.path.abspath(out))
    L = ["# wfmm — benchmarks", "",
         "<!-- Written by ./scripts/bench --publish (bench/publish_docs.py) from the reports in "
         "bench/results/; do not edit: change bench/notes.md or the generator, then run "
         "python3 bench/publish_docs.py. -->", "",
         "wfmm against glibc's malloc, mimalloc and jemalloc (allocation workloads and real "
         "programs, each allocator preloaded), and wfmm's reclamation against xenium's schemes "
         "and liburcu on xenium's containers. All figures are medians of interleaved rounds on "
         "a 2-core VM shared with other work: single figures are noisy, so compare ratios "
         "from the same run, never absolute times across runs.", "",
         "```sh",
         "./scripts/bench --quick            # < 10 min: reports in bench/out/ (ignored by git)",
         "./scripts/bench --full             # about an hour: bench/out/full/",
         "./scripts/bench --quick --publish  # into bench/results/ (tracked), then this page",
         "./scripts/bench --only larson,sqlite3 --rounds 1 --no-reclaim   # a few workloads",
         "python3 bench/run_alloc.py --rounds 3 --min-time 0.2            # the micro benchmark",
         "python3 bench/publish_docs.py      # this page again from bench/results/, no runs",
         "```", ""]
    notes = read(os.path.join(ROOT, "bench", "notes.md"))
    if notes:
        L += trim(notes.split("\n")) + [""]
    L += suite_part("Quick suite", os.path.join(results, "report.md"), out_dir)
    L += suite_part("Full suite", os.path.join(results, "full", "report.md"), out_dir)
    L += ["## Reclamation", ""]
    L += ["### Full grid (1 s per configuration)", ""]
    L += reclaim_part(os.path.join(results, "full", "reclaim.md"), out_dir)
    L += ["### Quick grid", ""]
    L += reclaim_part(os.path.join(results, "reclaim.md"), out_dir)
    micro = read(os.path.join(results, "alloc-micro.md"))
    if micro:
        m = micro.split("\n")
        m = [l for l in m if not l.startswith("# ")]
        L += ["## Micro benchmark (Google Benchmark through the standard names)", ""]
        L += trim(m) + [""]
    progs = os.path.join(results, "programs.md")
    if os.path.exists(progs):
        L += ["## Real programs alone", "",
              f"`python3 bench/run_programs.py` (the real programs only, with CPU time): "
              f"[{os.path.relpath(progs, ROOT)}]({os.path.relpath(progs, out_dir)}).", ""]
    return "\n".join(trim(L)) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    if read(os.path.join(args.results, "report.md")) is None and \
            read(os.path.join(args.results, "full", "report.md")) is None:
        sys.exit(f"publish_docs: no report.md in {args.results} (run ./scripts/bench --publish)")
    text = generate(os.path.abspath(args.results), args.out)
    if args.check:
        if read(args.out) != text:
            print(f"publish_docs: {args.out} is stale: run python3 bench/publish_docs.py")
            return 1
        print(f"publish_docs: {args.out} is up to date")
        return 0
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"publish_docs: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
