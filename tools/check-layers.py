#!/usr/bin/env python3
"""Fails when the top-level modules of src/ use each other in a circle.

A module is a file or directory directly under src/ (lib.rs and main.rs excluded); module A
uses module B when a non-comment line of A's files names `crate::B` (or `uwgate::B`). Prints
the edges, then each circle found, and exits 1 if there is one. Run by `make lint`.
"""
import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "src"
mods = sorted(
    n[:-3] if n.endswith(".rs") else n
    for n in os.listdir(src)
    if n not in ("lib.rs", "main.rs") and (n.endswith(".rs") or os.path.isdir(os.path.join(src, n)))
)
uses = {m: set() for m in mods}
ref = re.compile(r"\b(?:crate|uwgate)::([a-z_]+)")
for m in mods:
    path = os.path.join(src, m + ".rs") if os.path.isfile(os.path.join(src, m + ".rs")) else os.path.join(src, m)
    files = [path] if path.endswith(".rs") else [
        os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(".rs")
    ]
    for f in files:
        for line in open(f, encoding="utf-8"):
            code = line.split("//", 1)[0]
            for target in ref.findall(code):
                if target in uses and target != m:
                    uses[m].add(target)

for m in mods:
    if uses[m]:
        print(f"  {m} -> {', '.join(sorted(uses[m]))}")

# A circle is a strongly connected component of more than one module (Tarjan).
index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in uses[v]:
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            comps.append(sorted(comp))


for v in mods:
    if v not in index:
        visit(v)
for c in comps:
    print("CIRCLE: " + " <-> ".join(c))
print(f"{len(mods)} modules, {'no circle' if not comps else str(len(comps)) + ' circle(s)'}")
sys.exit(1 if comps else 0)
