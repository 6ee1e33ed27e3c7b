#!/usr/bin/env bash
# python3: dicts, strings, lists and threads. SCALE multiplies the work.
s=${SCALE:-1}
exec python3 - "$s" <<'PY'
import sys, threading, json, hashlib
s = int(sys.argv[1])
n = 200000 * s
d = {}
for i in range(n):
    d["k%d" % i] = [i, str(i) * (i % 7), {"x": i % 13}]
for i in range(0, n, 3):
    del d["k%d" % i]
h = hashlib.sha256()
for k in sorted(d)[: 50000]:
    h.update(json.dumps(d[k]).encode())
print(len(d), h.hexdigest())
out = [None] * 4
def work(t):
    acc = []
    for i in range(t, 40000 * s, 4):
        acc.append(("%08d" % i)[::-1] + "x" * (i % 50))
    acc.sort()
    out[t] = hashlib.md5("".join(acc).encode()).hexdigest()
ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print(out)
PY
