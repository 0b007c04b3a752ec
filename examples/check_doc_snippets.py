#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""check_doc_snippets.py: every C++ snippet of a guide is code the tests build and run.

    check_doc_snippets.py DOC.md SOURCE.cpp... [-- DOC.md SOURCE.cpp...]

For each ```cpp block of DOC.md, its code lines (comments and blank lines left out, spaces
collapsed) must appear in one of the SOURCEs, in the same order, within 150 code lines of
the first one: the source may add lines (error checks, setup), never change the snippet's
own. Exits 1 naming each snippet, and each of its lines, that no source holds.
"""
import re
import sys


def snippets(path):
    """(line number, lines) of each ```cpp block."""
    found, current, start = [], None, 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f.read().split("\n"), 1):
            fence = line.strip()
            if current is None and fence.startswith("```cpp"):
                current, start = [], number + 1
            elif current is not None and fence.startswith("```"):
                found.append((start, current))
                current = None
            elif current is not None:
                current.append(line)
    return found


def code_lines(lines):
    out = []
    for line in lines:
        code = re.sub(r"\s+", " ", re.sub(r"//.*$", "", line).strip())
        if code:
            out.append(code)
    return out


def holds(source, snippet, window=150):
    """True when `snippet`'s lines appear in `source` in order, close together."""
    reach = max(3 * len(snippet) + 5, window)
    for first, line in enumerate(source):
        if line != snippet[0]:
            continue
        matched = 0
        for candidate in source[first:first + reach]:
            if candidate == snippet[matched]:
                matched += 1
                if matched == len(snippet):
                    return True
    return False


def check(doc, sources):
    texts = []
    for path in sources:
        with open(path, encoding="utf-8") as f:
            texts.append(code_lines(f.read().split("\n")))
    failures = 0
    blocks = snippets(doc)
    for start, block in blocks:
        wanted = code_lines(block)
        if not wanted or any(holds(text, wanted) for text in texts):
            continue
        failures += 1
        print(f"{doc}:{start}: this snippet is not in {', '.join(sources)}:")
        for line in wanted:
            mark = "   " if any(line in text for text in texts) else ">> "
            print(f"  {mark}{line}")
    print(f"{doc}: {len(blocks) - failures} of {len(blocks)} snippets found in the built code")
    return failures


def main(argv):
    groups, current = [], []
    for arg in argv:
        if arg == "--":
            groups.append(current)
            current = []
        else:
            current.append(arg)
    groups.append(current)
    failures = 0
    for group in groups:
        if len(group) < 2:
            print(__doc__, file=sys.stderr)
            return 2
        failures += check(group[0], group[1:])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
