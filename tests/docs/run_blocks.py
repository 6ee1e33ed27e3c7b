#!/usr/bin/env python3
"""Compiles and runs every ```c and ```cpp code block of the documentation against the built
libwfmm, so that the examples users copy cannot rot. Each block is a complete program; it must
compile without warnings and exit 0. Failures name the file and line of the block.

usage: run_blocks.py --src DIR --build DIR [--cc CC] [--cxx CXX] [--jobs N] [--list] [FILE...]

FILE defaults to DIR/README.md and every DIR/docs/*.md. Tags: ```c (C11), ```cpp, ```c++ and
```cxx (C++20); other tags (sh, text, cmake, ...) are not run. Built with
  CC  -std=c11   -Wall -Wextra -Werror -I DIR/include FLAGS block.c   -L BUILD -lwfmm -Wl,-rpath,BUILD LIBS
  CXX -std=c++20 -Wall -Wextra -Werror -I DIR/include FLAGS block.cpp -L BUILD -lwfmm -Wl,-rpath,BUILD LIBS
and run with LD_PRELOAD removed from the environment, a 60 s limit, in a scratch folder.

An HTML comment on the line directly before the opening fence adjusts one block:
  <!-- docs-test: std=c++17 libs=-lpthread env=WFMM_DEFERRED_FREE=1 -->
Keys (words split as by a POSIX shell, so quote a value with spaces; a key may repeat):
  std=STD        -std=STD instead of the default (c11 / c++20)
  libs=ARGS      added after the source (libraries)
  flags=ARGS     added before the source (compiler flags, e.g. -DNAME, -Wno-...)
  env=NAME=VALUE set for the run
  expect-fail    the program must fail: exit non-zero or die of a signal (a bad-input demo)
  compile-only   compile and link, do not run
  skip=REASON    neither compiled nor run; REASON is printed
  needs=HEADER   skip (saying so) when the compiler cannot find <HEADER>, e.g. an optional
                 third-party library such as xenium
A docs-test comment that is not directly followed by a c/cpp fence, an unknown key, a fence
left open, or no block found at all is an error too.
"""
import argparse
import concurrent.futures
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

LANGS = {"c": "c", "cpp": "cpp", "c++": "cpp", "cxx": "cpp"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^\s`]*)")
DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:(.*?)-->\s*$")
FLAG_KEYS = {"expect-fail", "compile-only"}
VALUE_KEYS = {"std", "libs", "flags", "env", "skip", "needs"}
RUN_TIMEOUT_S = 60
COMPILE_TIMEOUT_S = 300


class Block:
    def __init__(self, path, line, lang, code, opts):
        self.path, self.line, self.lang, self.code, self.opts = path, line, lang, code, opts

    def where(self, src):
        return f"{os.path.relpath(self.path, src)}:{self.line}"


def parse_directive(text):
    """{key: [values]} from the inside of a docs-test comment; raises ValueError."""
    opts = {}
    for word in shlex.split(text):
        key, eq, value = word.partition("=")
        if key in FLAG_KEYS and not eq:
            opts[key] = [True]
        elif key in VALUE_KEYS and eq and value:
            opts.setdefault(key, []).append(value)
        else:
            raise ValueError(f"unknown or malformed docs-test key {word!r} (keys: std=, libs=, "
                             "flags=, env=NAME=VALUE, expect-fail, compile-only, skip=REASON, "
                             "needs=HEADER)")
    if "env" in opts:
        for e in opts["env"]:
            if "=" not in e:
                raise ValueError(f"env={e}: expected env=NAME=VALUE")
    return opts


def extract(path):
    """([Block], [error message]) for one Markdown file."""
    blocks, errors = [], []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i, pending = 0, None  # pending: (line number, opts) of a directive awaiting its fence
    while i < len(lines):
        line = lines[i]
        d = DIRECTIVE.match(line)
        if d:
            if pending:
                errors.append((pending[0], "docs-test comment not followed by a ```c/```cpp fence"))
            try:
                pending = (i + 1, parse_directive(d.group(1)))
            except ValueError as e:
                errors.append((i + 1, str(e)))
                pending = None
            i += 1
            continue
        m = FENCE.match(line)
        if m and m.group(2)[0] == "`" and "`" in line[m.end(2):]:
            m = None  # CommonMark: a backtick fence's info string has no backtick (inline code)
        if not m:
            if pending:
                errors.append((pending[0], "docs-test comment not followed by a ```c/```cpp fence"))
                pending = None
            i += 1
            continue
        indent, marker, tag = m.group(1), m.group(2), m.group(3).lower()
        start = i + 1
        body, j, closed = [], i + 1, False
        close = re.compile(r"^\s*" + re.escape(marker[0]) + "{" + str(len(marker)) + r",}\s*$")
        while j < len(lines):
            if close.match(lines[j]):
                closed = True
                break
            # Fences indented in a list item: drop the indentation of the fence.
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        if not closed:
            errors.append((start, f"fence {marker}{tag} is never closed"))
            break
        lang = LANGS.get(tag)
        if lang:
            blocks.append(Block(path, start, lang, "\n".join(body) + "\n", pending[1] if pending else {}))
        elif pending:
            errors.append((pending[0], f"docs-test comment before a ```{tag} fence (only c/cpp blocks are run)"))
        pending = None
        i = j + 1
    if pending:
        errors.append((pending[0], "docs-test comment not followed by a ```c/```cpp fence"))
    return blocks, [(path, ln, msg) for ln, msg in errors]


def header_found(compiler, lang, header):
    r = subprocess.run([compiler, "-E", "-x", "c" if lang == "c" else "c++", "-"],
                       input=f"#include <{header}>\n", capture_output=True, text=True)
    return r.returncode == 0


def check(block, args, scratch):
    """(status, message): status is 'ok', 'skipped' or 'FAILED'."""
    o = block.opts
    if "skip" in o:
        return "skipped", "skip=" + " ".join(o["skip"])
    compiler = args.cc if block.lang == "c" else args.cxx
    for h in o.get("needs", []):
        if not header_found(compiler, block.lang, h):
            return "skipped", f"needs <{h}>, which {os.path.basename(compiler)} does not find"
    std = o.get("std", ["c11" if block.lang == "c" else "c++20"])[-1]
    name = re.sub(r"[^A-Za-z0-9]+", "_", block.where(args.src))
    src = os.path.join(scratch, f"{name}.{block.lang}")
    exe = os.path.join(scratch, name)
    with open(src, "w") as f:
        # The compiler's messages then name the Markdown file and its line.
        f.write(f'#line {block.line + 1} "{os.path.relpath(block.path, args.src)}"\n' + block.code)
    flags = [w for v in o.get("flags", []) for w in shlex.split(v)]
    libs = [w for v in o.get("libs", []) for w in shlex.split(v)]
    cmd = ([compiler, f"-std={std}", "-Wall", "-Wextra", "-Werror",
            "-I", os.path.join(args.src, "include")] + flags + [src, "-o", exe,
           "-L", args.build, "-lwfmm", f"-Wl,-rpath,{args.build}"] + libs)
    t0 = time.time()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "FAILED", f"compiler ran over {COMPILE_TIMEOUT_S} s: {shlex.join(cmd)}"
    t_compile = time.time() - t0
    if r.returncode != 0:
        return "FAILED", f"does not compile: {shlex.join(cmd)}\n{(r.stdout + r.stderr).strip()}"
    if "compile-only" in o:
        return "ok", f"compiled ({t_compile:.1f} s), not run (compile-only)"
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    for e in o.get("env", []):
        k, _, v = e.partition("=")
        env[k] = v
    t0 = time.time()
    try:
        r = subprocess.run([exe], capture_output=True, text=True, errors="replace", env=env,
                           cwd=scratch, timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "FAILED", f"ran over {RUN_TIMEOUT_S} s"
    t_run = time.time() - t0
    out = (r.stdout + r.stderr).strip()
    out = "\n".join(out.splitlines()[-30:])
    status = f"exit status {r.returncode}" if r.returncode >= 0 else f"killed by signal {-r.returncode}"
    timing = f"compiled {t_compile:.1f} s, ran {t_run:.2f} s"
    if "expect-fail" in o:
        if r.returncode == 0:
            return "FAILED", f"expect-fail, but the program exited 0 ({timing})\n{out}"
        return "ok", f"failed as expected: {status} ({timing})"
    if r.returncode != 0:
        return "FAILED", f"{status} ({timing})\n{out}"
    return "ok", timing


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", required=True, help="source tree (include/, README.md, docs/)")
    ap.add_argument("--build", required=True, help="folder holding libwfmm.so")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--cxx", default=os.environ.get("CXX", "c++"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--list", action="store_true", help="print the blocks found and exit")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    args.src = os.path.abspath(args.src)
    args.build = os.path.abspath(args.build)
    files = [os.path.abspath(f) for f in args.files]
    if not files:
        files = [os.path.join(args.src, "README.md")]
        docs = os.path.join(args.src, "docs")
        if os.path.isdir(docs):
            files += sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    blocks, errors = [], []
    for f in files:
        b, e = extract(f)
        blocks += b
        errors += e
    for path, ln, msg in errors:
        print(f"{os.path.relpath(path, args.src)}:{ln}: error: {msg}")
    if args.list:
        for b in blocks:
            print(f"{b.where(args.src)}: {b.lang} {b.opts or ''}")
        return 1 if errors else 0
    if not blocks:
        print("run_blocks: no ```c or ```cpp block found in " + ", ".join(files))
        return 1
    if not os.path.exists(os.path.join(args.build, "libwfmm.so")):
        print(f"run_blocks: {args.build}/libwfmm.so is not built")
        return 1
    failed = skipped = 0
    with tempfile.TemporaryDirectory(prefix="wfmm-docs-") as scratch:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(lambda b: check(b, args, scratch), blocks))
    for b, (status, msg) in zip(blocks, results):
        head, _, rest = msg.partition("\n")
        print(f"{b.where(args.src)}: ```{b.lang} block: {status}: {head}")
        if rest:
            print("    " + rest.replace("\n", "\n    "))
        failed += status == "FAILED"
        skipped += status == "skipped"
    print(f"run_blocks: {len(blocks)} blocks in {len(files)} files: {len(blocks) - failed - skipped} "
          f"passed, {skipped} skipped, {failed} failed; {len(errors)} errors in docs-test comments "
          "or fences")
    return 1 if failed or errors else 0


if __name__ == "__main__":
    sys.exit(main())
