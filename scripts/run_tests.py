#!/usr/bin/env python3
"""Runs every test binary of the workspace, a few at a time, slowest first (scripts/test.sh).

The workspace must be built first (`cargo test --workspace --locked --no-run`); this lists the
test binaries from the same command with `--message-format=json` (a no-op build), runs them
JOBS at a time (default 3, `$CANDLES_TEST_JOBS`), plus the doc tests, prints one line per
binary (its output only when it fails), and ends with one line `N passed, N failed` alone.
It exits non-zero on any failure and on any ignored test (CI must see every test run).

Slowest first: each binary's wall time is kept in $CARGO_TARGET_DIR/test-times.json for the
next run; binaries not timed yet start first, the known slow ones (KNOWN_SLOW) before the others.
`--list` prints the binaries in that order and runs nothing. `-p PACKAGE` (repeatable) limits the run to those
packages (they must be built too); every other argument is passed to every test binary (e.g. a
name filter).
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# Binaries known to take minutes (each starts brokers and whole stacks), slowest first: the
# order of a first run, before test-times.json has their times.
KNOWN_SLOW = [
    "--test full_stack",
    "--test broker_persistence",
    "--test two_instances",
    "--test kill",
    "--test binance_klines",
    "--test with_connectors",
    "--test e2e_service",
    "--test e2e_embedded",
    "--test against_sim",
]

RESULT = re.compile(
    r"test result: (\w+)\. (\d+) passed; (\d+) failed; (\d+) ignored; (\d+) measured"
)


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR") or os.path.join(
        os.environ.get("HOME", ""), ".cache/candles-target"
    )


def split_args(argv):
    """(cargo's package selection, the test binaries' arguments) from the command line."""
    select, rest, i = [], [], 0
    argv = [a for a in argv if a != "--list"]
    while i < len(argv):
        if argv[i] in ("-p", "--package") and i + 1 < len(argv):
            select += ["-p", argv[i + 1]]
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    return (select or ["--workspace"]), rest


def list_binaries(select):
    """(name, executable, package directory) of every test binary, from cargo's JSON."""
    out = subprocess.run(
        ["cargo", "test", *select, "--locked", "--no-run", "--message-format=json"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    found = []
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue
        crate, kind = msg["target"]["name"], msg["target"]["kind"][0]
        package_dir = os.path.dirname(msg["manifest_path"])
        where = os.path.relpath(package_dir) if package_dir != os.getcwd() else "."
        what = {"lib": "--lib", "test": f"--test {crate}"}.get(kind, f"--{kind} {crate}")
        found.append((f"{where} {what}", msg["executable"], package_dir))
    return found


def expected_seconds(name):
    """A first run's guess: known slow binaries first (in KNOWN_SLOW's order), then the rest."""
    for rank, slow in enumerate(KNOWN_SLOW):
        if name.endswith(slow):
            return 2e9 - rank
    return 1e9


def summarize(text):
    """(passed, failed, ignored) over every `test result:` line of libtest output."""
    passed = failed = ignored = 0
    for m in RESULT.finditer(text):
        passed += int(m.group(2))
        failed += int(m.group(3))
        ignored += int(m.group(4))
    return passed, failed, ignored


def run(job, args, env):
    name, command, cwd = job
    start = time.monotonic()
    proc = subprocess.run(
        command + args, cwd=cwd, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, errors="replace",
    )
    return name, proc.returncode, proc.stdout, time.monotonic() - start


def main():
    select, args = split_args(sys.argv[1:])
    jobs = int(os.environ.get("CANDLES_TEST_JOBS", "3"))
    times_file = os.path.join(target_dir(), "test-times.json")
    try:
        with open(times_file) as f:
            times = json.load(f)
    except (OSError, ValueError):
        times = {}
    work = [(n, [exe], cwd) for n, exe, cwd in list_binaries(select)]
    # The doc tests run through cargo (rustdoc compiles them); they take no filter arguments.
    work.append(("--doc", ["cargo", "test", *select, "--locked", "--doc"], os.getcwd()))
    work.sort(key=lambda j: -times.get(j[0], expected_seconds(j[0])))
    if "--list" in sys.argv[1:]:
        for name, command, _ in work:
            print(f"{times.get(name, '-'):>6} s  {name}  ({command[0]})")
        return 0
    env = dict(os.environ)
    # The workspace's binaries are built already: the full-stack tests must not run cargo.
    env["CANDLES_E2E_NO_BUILD"] = "1"
    deps = os.path.join(target_dir(), "debug", "deps")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (deps, env.get("LD_LIBRARY_PATH", "")) if p
    )
    totals = [0, 0, 0]
    bad = []
    lock = threading.Lock()
    print(f"== {len(work)} test binaries, {jobs} at a time", flush=True)

    def one(job):
        name, code, output, secs = run(job, [] if job[0] == "--doc" else args, env)
        passed, failed, ignored = summarize(output)
        ok = code == 0 and failed == 0 and ignored == 0
        with lock:
            times[name] = round(secs, 1)
            totals[0] += passed
            totals[1] += failed + (0 if code == 0 or failed else 1)
            totals[2] += ignored
            status = "ok  " if ok else "FAIL"
            extra = f", {ignored} ignored" if ignored else ""
            print(f"{status} {name}: {passed} passed, {failed} failed{extra} ({secs:.0f} s)",
                  flush=True)
            if not ok:
                bad.append(name)
                print(f"---- output of {name} (exit {code}) ----\n{output}\n---- end of {name}",
                      flush=True)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, work))
    try:
        with open(times_file, "w") as f:
            json.dump(times, f, indent=1, sort_keys=True)
    except OSError:
        pass
    if totals[2]:
        print(f"{totals[2]} tests were ignored: every test must run", flush=True)
    if bad:
        print(f"failed: {', '.join(bad)}", flush=True)
    print(f"{totals[0]} passed, {totals[1]} failed")
    return 1 if totals[1] or totals[2] or bad else 0


if __name__ == "__main__":
    sys.exit(main())
