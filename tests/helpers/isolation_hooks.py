"""Stand-ins for the function a worker runs on each job (malhug.isolation.worker_task): they
misbehave the way a reader with a bug could, chosen by the file's name."""
import json
import os
import signal
import sys
import time

from malhug.isolation import read_file

MODULES_REPORT = "MALHUG_TEST_MODULES_REPORT"


def hostile_task(job):
    name = os.path.basename(job.path)
    if name.startswith("alloc"):
        hoard = bytearray(4 * 1024 ** 3)
        return {"never": len(hoard)}
    if name.startswith("sleep"):
        time.sleep(3600)
    if name.startswith("exit"):
        os._exit(3)
    if name.startswith("segv"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("raise"):
        raise RuntimeError("reader bug")
    if name.startswith("spin"):
        while True:
            pass
    return read_file(job)


def modules_task(job):
    """The real reading, with the modules it added to the worker written down for the test."""
    before = set(sys.modules)
    data = read_file(job)
    added = sorted(set(sys.modules) - before)
    folder = os.environ[MODULES_REPORT]
    with open(os.path.join(folder, f"{os.getpid()}-{time.monotonic_ns()}.json"), "w") as out:
        json.dump({"file": job.display, "added": added}, out)
    return data


def remote_dies_task(job):
    """A reader that dies on any remote file (the real reading for local ones)."""
    if job.remote is not None:
        os._exit(3)
    return read_file(job)


DESCRIPTORS_REPORT = "MALHUG_TEST_DESCRIPTORS_REPORT"


def descriptors_task(job):
    """The real reading, with the descriptors the worker holds written down for the test."""
    held = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    with open(os.path.join(os.environ[DESCRIPTORS_REPORT], f"{os.getpid()}.json"), "w") as out:
        json.dump({"held": held, "parent": os.getppid()}, out)
    return read_file(job)


PIDS_REPORT = "MALHUG_TEST_PIDS_REPORT"
_HOARD = []


def pid_task(job):
    """The real reading, with the worker's pid written down; a file named hoard* makes the worker
    keep 600 MB resident afterwards, as a reader that leaks would."""
    name = os.path.basename(job.path)
    if name.startswith("hoard"):
        _HOARD.append(b"\x01" * (600 * 1024 * 1024))
    with open(os.path.join(os.environ[PIDS_REPORT], name), "w") as out:
        out.write(str(os.getpid()))
    return read_file(job)
