#!/usr/bin/env python3
"""Checks the code-layout rules a newcomer relies on (docs/DESIGN.md, "Code layout"); run by CI.

- No source file over 600 lines (a long `#[cfg(test)]` module goes to a `tests.rs` of its own).
- No function over 80 lines outside tests.
- No import circle between the modules of a crate (`crate::a` used in `b` and `crate::b` in `a`,
  or any longer cycle).

Prints every violation and exits 1 if there is one. Only reads files; needs nothing but Python 3.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE_DIRS = ["backend", "tui", "proto"]
MAX_FILE = 600
MAX_FN = 80


def rust_files():
    for top in SOURCE_DIRS:
        for path in sorted((ROOT / top).rglob("*.rs")):
            if "target" in path.parts or "fuzz" in path.parts:
                continue
            yield path


def code_lines(text):
    """The lines before the file's `#[cfg(test)]` module, if it has one at the top level."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#[cfg(test)]"):
            following = [x for x in lines[i + 1 : i + 4] if not x.startswith("#[")]
            if following and following[0].startswith("mod "):
                return lines[:i]
    return lines


def strip_strings_and_comments(line):
    line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(?:\\.|[^'\\])'", "''", line)
    return line.split("//", 1)[0]


FN_START = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def long_functions(path, lines):
    """(name, first line, length) of every function longer than MAX_FN lines, by brace counting."""
    found = []
    i = 0
    while i < len(lines):
        m = FN_START.match(lines[i])
        if not m:
            i += 1
            continue
        name, start, depth, opened = m.group(6), i, 0, False
        j = i
        while j < len(lines):
            code = strip_strings_and_comments(lines[j])
            if not opened and ";" in code and "{" not in code:
                break  # a declaration without a body (trait method)
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            if opened and depth <= 0:
                break
            j += 1
        length = j - start + 1
        if opened and length > MAX_FN:
            found.append((name, start + 1, length))
        i = i + 1 if not opened else j + 1
    return found


def crate_root(path):
    for parent in path.parents:
        if (parent / "Cargo.toml").exists():
            return parent
    return None


def module_of(path, src):
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts)


USE_CRATE = re.compile(r"crate::(\w+)")


def circles():
    """Cycles in the graph 'module a names crate::b' between the top-level modules of each crate."""
    crates = {}
    for path in rust_files():
        root = crate_root(path)
        src = root / "src"
        if src not in path.parents:
            continue
        if "bin" in path.relative_to(src).parts:
            continue
        module = module_of(path, src).split("::")[0]
        text = "\n".join(strip_strings_and_comments(x) for x in code_lines(path.read_text()))
        edges = crates.setdefault(root.name, {}).setdefault(module, set())
        for used in USE_CRATE.findall(text):
            if used != module and module:
                edges.add(used)
    found = []
    for crate, graph in crates.items():
        state = {}

        def visit(node, stack):
            state[node] = "open"
            stack.append(node)
            for nxt in sorted(graph.get(node, ())):
                if nxt not in graph:
                    continue
                if state.get(nxt) == "open":
                    found.append((crate, stack[stack.index(nxt):] + [nxt]))
                elif nxt not in state:
                    visit(nxt, stack)
            stack.pop()
            state[node] = "done"

        for node in sorted(graph):
            if node not in state:
                visit(node, [])
    return found


def main():
    problems = []
    for path in rust_files():
        rel = path.relative_to(ROOT)
        lines = path.read_text().splitlines()
        in_tests = "tests" in rel.parts or "benches" in rel.parts
        code = code_lines("\n".join(lines))
        if not in_tests and len(lines) > MAX_FILE:
            problems.append(f"{rel}: {len(lines)} lines (at most {MAX_FILE}; move a long test module to <file>/tests.rs)")
        for name, line, length in [] if in_tests else long_functions(path, code):
            problems.append(f"{rel}:{line}: fn {name} is {length} lines (at most {MAX_FN})")
    for crate, cycle in circles():
        problems.append(f"{crate}: import circle {' -> '.join(cycle)}")
    for p in problems:
        print(p)
    if problems:
        print(f"check_structure: {len(problems)} problem(s)")
        return 1
    print("check_structure: files, functions and imports within the rules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
