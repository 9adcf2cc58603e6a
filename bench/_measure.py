"""Run one command in a fresh process and measure it: wall time, peak RSS, bytes read.

    python bench/_measure.py --out RESULT.json --stdout OUT --stderr ERR [--timeout S] [--cwd D] -- CMD...

This wrapper is started once per measured run, so that its RUSAGE_CHILDREN covers exactly
one child (ru_maxrss is the peak resident set of the child and of any process it waited for).
Bytes read come from /proc/self/io: Linux adds a reaped child's I/O counters to its parent's,
so the wrapper's `rchar` after the wait, minus before, is what the child read through read()
calls -- from disk or from the page cache alike. It shows whether a scanner read the tensor
data of a checkpoint or skipped over it. Standard library only.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time


def _io_counters() -> dict:
    try:
        with open("/proc/self/io") as stream:
            return {k: int(v) for k, v in (line.split(":") for line in stream if ":" in line)}
    except OSError:  # not Linux, or /proc not mounted
        return {}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--stdout", required=True)
    parser.add_argument("--stderr", required=True)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--cwd", default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    before = _io_counters()
    started = time.perf_counter()
    with open(args.stdout, "wb") as out, open(args.stderr, "wb") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                 cwd=args.cwd, start_new_session=True)
        # A blocking wait (Popen.wait with a timeout polls in sleeps of up to 50 ms, which
        # would round every time up); a timer kills the child's own process group if it hangs.
        expired = threading.Event()

        def kill():
            expired.set()
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended in the meantime
                pass

        timer = threading.Timer(args.timeout, kill) if args.timeout else None
        if timer:
            timer.start()
        code = child.wait()
        seconds = time.perf_counter() - started
        if timer:
            timer.cancel()
        timed_out = expired.is_set()
    after = _io_counters()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "exit_code": code,
        "timed_out": timed_out,
        "seconds": seconds,
        "peak_rss_kib": usage.ru_maxrss,  # KiB on Linux
        "user_seconds": usage.ru_utime,
        "system_seconds": usage.ru_stime,
        "read_bytes": (after["rchar"] - before["rchar"]) if after and before else None,
    }
    with open(args.out, "w") as stream:
        json.dump(result, stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
