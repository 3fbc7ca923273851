#!/usr/bin/env python3
"""Fails when a closure literal appears inside #expect(...) / #require(...) or as their trailing closure.

Swift 6.3.1 miscompiles this inside a closure (a test body passed to withGateway { ... }, say): the next
closure literal after the macro runs the macro's closure instead of its own. Seen here:

    #expect(responses.filter { $0.status == 200 }.count == 2)
    let refused = responses.filter { $0.status == 503 }   // counted the 200s

so assertions silently checked the wrong thing. Compute the value first (`let ok = xs.allSatisfy { ... }`,
`let error = thrownError { ... }`), then `#expect(ok)`.
"""
import pathlib
import re
import sys

MACRO = re.compile(r"#(expect|require)\s*\(")


def skip_string(text, i):
    """Returns the index after the string literal starting at text[i] (which is '#' or '"')."""
    hashes = 0
    while text[i] == "#":
        hashes += 1
        i += 1
    triple = text.startswith('"""', i)
    quote = '"""' if triple else '"'
    i += len(quote)
    closing = quote + "#" * hashes
    while i < len(text):
        if text[i] == "\\" and hashes == 0:
            if text.startswith("\\(", i):  # interpolation: skip the balanced expression
                depth, i = 1, i + 2
                while i < len(text) and depth:
                    depth += {"(": 1, ")": -1}.get(text[i], 0)
                    i += 1
                continue
            i += 2
            continue
        if text.startswith(closing, i):
            return i + len(closing)
        i += 1
    return i


def violations(text):
    for match in MACRO.finditer(text):
        i, depth = match.end(), 1
        found = False
        while i < len(text) and depth:
            c = text[i]
            if c == '"' or (c == "#" and re.match(r'#+"', text[i:])):
                i = skip_string(text, i)
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif c == "{":
                found = True
            i += 1
        rest = text[i:].lstrip(" \t")
        if found or rest.startswith("{"):
            yield text.count("\n", 0, match.start()) + 1


def main():
    bad = []
    for path in sorted(pathlib.Path("Tests").rglob("*.swift")):
        # Comment lines may quote the forbidden forms; blank them, keeping line numbers.
        text = "\n".join("" if line.lstrip().startswith("//") else line for line in path.read_text().split("\n"))
        for line in violations(text):
            bad.append(f"{path}:{line}: closure inside a test macro; compute the value first")
    for entry in bad:
        print(entry)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
