#!/usr/bin/env python3
"""Summarises `perf script` output: for runtime leaf functions (retain/release, malloc, clock), which of
the gateway's own functions they are called from. Usage: perf script -i perf.data | bench/stack_summary.py"""
import collections
import re
import sys

RUNTIME = ("swift_", "malloc", "_int_malloc", "free", "_int_free", "__vdso", "clock_gettime", "cfree")
LEAVES = ["swift_retain", "swift_release", "malloc", "swift_allocObject", "free", "swift_bridgeObjectRetain",
          "swift_bridgeObjectRelease", "__vdso_clock_gettime", "swift_beginAccess", "swift_once"]

stacks, current = [], []
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line.strip():
        if current:
            stacks.append(current)
        current = []
        continue
    if line.startswith("\t") or line.startswith(" "):
        parts = line.strip().split(" ", 1)
        if len(parts) == 2:
            current.append(re.sub(r"\+0x[0-9a-f]+ \(.*\)$", "", parts[1]))
if current:
    stacks.append(current)

total = len(stacks) or 1


def short(symbol):
    symbol = re.sub(r"^\$s", "", symbol)
    return symbol[:120]


for leaf in LEAVES:
    callers = collections.Counter()
    hits = 0
    for stack in stacks:
        if stack and stack[0].startswith(leaf):
            hits += 1
            parent = next((f for f in stack[1:] if not f.startswith(RUNTIME)), "?")
            callers[short(parent)] += 1
    if hits:
        print(f"== {leaf}: {100 * hits / total:.2f}% of samples")
        for caller, count in callers.most_common(10):
            print(f"   {100 * count / total:5.2f}%  {caller}")
