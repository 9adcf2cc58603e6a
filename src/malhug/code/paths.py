"""Paths as the code engine knows them: constants where known, `*` for unknown parts."""
from __future__ import annotations

from .values import AValue

PATH_FUNCTIONS = {"pathlib.Path", "pathlib.PosixPath", "pathlib.PurePath", "pathlib.PurePosixPath",
                  "os.path.join", "os.path.expanduser", "os.path.abspath", "os.path.normpath",
                  "os.path.realpath", "os.fspath", "builtins.str", "os.path.expandvars"}
LISTINGS = {"pathlib.Path.glob": "", "pathlib.Path.rglob": "**/", "pathlib.Path.iterdir": "*",
            "os.listdir": "*", "os.scandir": "*", "os.walk": "**", "glob.glob": "", "glob.iglob": ""}
OPENERS = {"builtins.open", "io.open", "codecs.open", "pathlib.Path.open", "os.open", "gzip.open",
           "bz2.open", "lzma.open"}


def path_text(value) -> str | None:
    if not isinstance(value, AValue):
        return None
    if value.path:
        return value.path
    if value.known and isinstance(value.const, str):
        return value.const
    return None


def path_join(left: str, right: str) -> str:
    if right.startswith("/"):
        return right
    return left.rstrip("/") + "/" + right if left else right


def path_value(name: str, args) -> str | None:
    if not args or not all(a.known and isinstance(a.const, str) for a in args):
        return None
    parts = [a.const for a in args]
    if name == "os.path.join":
        path = parts[0]
        for part in parts[1:]:
            path = path_join(path, part)
        return path
    if name in ("pathlib.Path", "pathlib.PosixPath"):
        path = parts[0]
        for part in parts[1:]:
            path = path_join(path, part)
        return path
    return parts[0]
