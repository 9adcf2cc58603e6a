"""Keras models: legacy HDF5 (`.h5`), Keras 3 `.keras` archives, and `keras_metadata.pb`.

What can run when a Keras model loads is named in its config (JSON): the marshalled bytecode
of Lambda layers, and the modules and functions the loader resolves by name. The config is
read from HDF5 attributes (never the weights), from `config.json` of a `.keras` zip, or from
the JSON strings of a SavedModel's `keras_metadata.pb`; Lambda bytecode goes through the
marshal reader to the code engine.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import BinaryIO

from ..code.bytecode import lower
from ..code.engine import Unit, analyse_unit
from ..code.marshal_reader import MarshalError, load_code
from ..findings import Finding, Severity
from ..limits import MIB, LimitExceeded
from .base import ScanContext, _seekable

MAX_CONFIG_BYTES = 256 * MIB
MAX_CONFIG_NODES = 2_000_000
MAX_CONFIG_DEPTH = 256
MAX_LAMBDA_CODE_CHARS = 64 * MIB
MAX_HDF5_OBJECTS = 200_000
MAX_ATTRIBUTES = 200_000
MAX_PROTOBUF_DEPTH = 6
MAX_JSON_PROBES = 10_000

# Module families whose names the Keras loader resolves to its own objects.
KERAS_FAMILIES = ("keras", "tf_keras", "keras_hub", "keras_nlp", "keras_cv", "tensorflow")
# Keras looks names given with module "builtins" up in its own modules (activations, losses ...).
KERAS_BUILTINS_MODULE = "builtins"
# Objects defined by the training script: resolved only through Keras' registry.
SCRIPT_MODULE = "__main__"
# Names of layers that call a TensorFlow API function given by name.
TF_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")
FUNCTION_KEYS = (("function", "function_type", "module"),
                 ("output_shape", "output_shape_type", "output_shape_module"),
                 ("mask", "mask_type", "mask_module"))
CONFIG_ATTRIBUTES = ("model_config", "training_config")


# -- handlers

def handle_hdf5(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    """An HDF5 file: a legacy Keras model when its attributes hold a model config."""
    try:
        result = _read_hdf5(stream, ctx)
    except _Hdf5Unreadable as exc:
        ctx.add_problem(member, str(exc))
        return "hdf5"
    for where in result.get("unreadable", []):
        ctx.add_problem(member, f"HDF5 attribute {where} cannot be read")
    cycles = result.get("cycles", [])
    if cycles:
        ctx.add_finding(Finding(
            "hostile-shape", Severity.MEDIUM, "tampering",
            f"input built to exhaust a scanner or loader (HDF5 group linked into itself, a cycle: "
            f"{len(cycles)} found; a reader that walks the file never ends, and Keras never writes these)",
            ctx.location(member), "; ".join(cycles)[:300]))
    for link in result.get("external", []):
        ctx.add_finding(Finding(
            "hdf5-external-link", Severity.LOW, "tampering",
            f"HDF5 link to another file ({link}); Keras never writes these",
            ctx.location(member), link[:200]))
    walker = _Walker(ctx, member)
    configs = result.get("configs", [])
    for where, text in configs:
        config = _parse_json(text, ctx, member, where)
        if config is not None:
            walker.walk(config, where)
    return "keras_h5" if any(where.endswith("model_config") for where, _ in configs) else "hdf5"


def handle_config_json(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    """`config.json` of a Keras 3 `.keras` archive."""
    raw = stream.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        ctx.add_problem(member, f"Keras config larger than {MAX_CONFIG_BYTES} bytes: not read")
        return "keras_config"
    config = _parse_json(raw.decode("utf-8", "replace"), ctx, member, "config.json")
    if config is not None:
        _Walker(ctx, member).walk(config, "")
    return "keras_config"


def handle_metadata(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    """`keras_metadata.pb`: a protobuf whose strings are the JSON metadata of each layer."""
    raw = stream.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        ctx.add_problem(member, f"keras_metadata.pb larger than {MAX_CONFIG_BYTES} bytes: not read")
        return "keras_metadata"
    walker = _Walker(ctx, member)
    found = False
    for where, text in protobuf_json_strings(raw):
        config = _parse_json(text, ctx, member, where)
        if config is not None:
            found = True
            walker.walk(config, where)
    if not found and raw.strip():
        ctx.add_problem(member, "keras_metadata.pb holds no layer metadata that could be read")
    return "keras_metadata"


@dataclass(frozen=True)
class KerasArchiveLayout:
    """The zip layout of a Keras 3 `.keras` file, as the zip handler asks of a layout."""

    format: str = "keras"

    def hint_for(self, name: str) -> str | None:
        return "keras_config" if name == "config.json" else None

    def is_raw_record(self, name: str) -> bool:
        return False

    def is_storage(self, name: str) -> bool:
        return False


def keras_layout(names: list[str]) -> KerasArchiveLayout | None:
    """A zip holding `config.json` and `metadata.json` at its root is a `.keras` model."""
    return KerasArchiveLayout() if "config.json" in names and "metadata.json" in names else None


HANDLERS = {"hdf5": handle_hdf5, "keras_metadata": handle_metadata, "keras_config": handle_config_json}


# -- HDF5

class _Hdf5Unreadable(Exception):
    pass


def _read_hdf5(stream: BinaryIO, ctx: ScanContext) -> dict:
    """The HDF5 library can hang or crash on hostile files, so it reads them in a child
    process with a time limit; the child reports configs, external links and unreadable
    config attributes as JSON."""
    path, temporary = _file_path(stream, ctx)
    try:
        seconds = ctx.limits.hdf5_seconds
        if ctx.deadline.expires is not None:
            seconds = max(1.0, min(seconds, ctx.deadline.expires - time.monotonic()))
        try:
            done = run_hdf5_child(path, seconds)
        except subprocess.TimeoutExpired:
            raise LimitExceeded("hdf5_seconds", f"HDF5 structure not read within {seconds:g}s") from None
        except OSError as exc:
            raise _Hdf5Unreadable(f"HDF5 reader could not start: {_short(exc)}") from None
    finally:
        if temporary:
            os.unlink(path)
    try:
        result = json.loads(done.stdout.decode("utf-8", "replace"))
    except ValueError:
        result = None
    if not isinstance(result, dict):
        raise _Hdf5Unreadable(f"HDF5 reader failed: {_failure(done)[:200]}")
    if result.get("limit"):
        raise LimitExceeded(str(result["limit"])[:100], str(result.get("detail", ""))[:200])
    if result.get("error"):
        raise _Hdf5Unreadable(f"HDF5 file cannot be read: {str(result['error'])[:200]}")
    if not _well_formed(result):
        raise _Hdf5Unreadable("HDF5 reader failed: its answer is not in the shape it writes")
    return result


def _failure(done: subprocess.CompletedProcess) -> str:
    """How the child failed: killed by a signal (the HDF5 library crashing on the file), or
    the last line it wrote to stderr, or its exit code."""
    if done.returncode is not None and done.returncode < 0:
        try:
            return f"killed by {signal.Signals(-done.returncode).name}"
        except ValueError:
            return f"killed by signal {-done.returncode}"
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else f"exit code {done.returncode}"


def _well_formed(result: dict) -> bool:
    """The child's answer as the child writes it (a reader the file subverted may not)."""
    def texts(key: str) -> bool:
        value = result.get(key, [])
        return isinstance(value, list) and all(isinstance(item, str) for item in value)

    configs = result.get("configs", [])
    return (texts("external") and texts("unreadable") and texts("cycles") and isinstance(configs, list)
            and all(isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
                    for pair in configs))


def run_hdf5_child(path: str, seconds: float) -> subprocess.CompletedProcess:
    """The child program on one file (replaced in-process by the fuzz harness)."""
    return subprocess.run(
        [sys.executable, "-I", "-c", HDF5_CHILD, path, str(MAX_HDF5_OBJECTS), str(MAX_ATTRIBUTES)],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=seconds)


def _file_path(stream: BinaryIO, ctx: ScanContext) -> tuple[str, bool]:
    """The path of a file on disk holding the stream's bytes (a copy unless the stream is one)."""
    name = getattr(stream, "name", None)
    if isinstance(name, str) and os.path.isfile(name) and _seekable(stream) and stream.tell() == 0:
        return name, False
    handle = tempfile.NamedTemporaryFile(prefix="malhug-", suffix=".h5", delete=False)
    total = 0
    try:
        with handle:
            while True:
                ctx.deadline.check()
                chunk = stream.read(MIB)
                if not chunk:
                    break
                total += len(chunk)
                if total > ctx.limits.max_member_size:
                    raise LimitExceeded("max_member_size",
                                        f"HDF5 member larger than {ctx.limits.max_member_size} bytes")
                handle.write(chunk)
    except BaseException:
        os.unlink(handle.name)
        raise
    return handle.name, True


# Runs in the child: only h5py and json. Reads attributes (scalar strings only) and the link
# structure; never a dataset's data, never an external link's target.
HDF5_CHILD = r"""
import json, sys
path, max_objects, max_attributes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
CONFIG_ATTRIBUTES = ("model_config", "training_config")
out = {"configs": [], "external": [], "unreadable": [], "cycles": []}
counts = {"objects": 0, "attributes": 0, "hard": 0}

class Limit(Exception):
    pass

def text_of(value):
    if getattr(value, "shape", None) == (1,):
        value = value[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None

def attributes(name, obj):
    counts["objects"] += 1
    if counts["objects"] > max_objects:
        raise Limit("hdf5_objects", f"more than {max_objects} HDF5 objects")
    for attribute in list(obj.attrs.keys()):
        counts["attributes"] += 1
        if counts["attributes"] > max_attributes:
            raise Limit("hdf5_attributes", f"more than {max_attributes} HDF5 attributes")
        where = f"{name}/{attribute}" if name else attribute
        try:
            handle = obj.attrs.get_id(attribute)
            if handle.shape not in ((), (1,)) or handle.dtype.kind not in "SOU":
                continue
            text = text_of(obj.attrs[attribute])
        except Exception:
            if attribute in CONFIG_ATTRIBUTES:
                out["unreadable"].append(where)
            continue
        if text is None:
            continue
        if attribute in CONFIG_ATTRIBUTES or (text.lstrip().startswith("{") and '"class_name"' in text):
            out["configs"].append([where, text])

def ancestors(name):
    parts = name.split("/")[:-1]
    return ["/".join(parts[:i]) for i in range(len(parts) + 1)]

def links(name, link):
    if isinstance(link, h5py.ExternalLink) and len(out["external"]) < 100:
        out["external"].append(f"{name} -> {link.filename}:{link.path}")
    elif isinstance(link, h5py.SoftLink) and len(out["cycles"]) < 100:
        target = link.path.strip("/")
        if target in ancestors(name):
            out["cycles"].append(f"{name} -> /{target} (soft link)")
    elif isinstance(link, h5py.HardLink) and len(out["cycles"]) < 100 and counts["hard"] < max_objects:
        counts["hard"] += 1
        if h5.get(name, getclass=True) is h5py.Group:
            target = h5[name]
            for ancestor in ancestors(name):
                if (h5[ancestor] if ancestor else h5) == target:
                    out["cycles"].append(f"{name} -> /{ancestor}")
                    break
    return None

try:
    import h5py
    with h5py.File(path, "r") as h5:
        attributes("", h5)
        h5.visititems(attributes)
        if hasattr(h5, "visititems_links"):
            h5.visititems_links(links)
except Limit as exc:
    out = {"limit": exc.args[0], "detail": exc.args[1]}
except ImportError:
    out = {"error": "h5py is not installed"}
except Exception as exc:
    out = {"error": f"{type(exc).__name__}: {exc}"}
sys.stdout.write(json.dumps(out))
"""


# -- keras_metadata.pb

def protobuf_json_strings(data: bytes) -> list[tuple[str, str]]:
    """JSON objects held in length-delimited protobuf fields (no schema needed); when the bytes
    do not read as protobuf, JSON objects that name a class are looked for directly."""
    found: list = []
    if _protobuf_fields(data, "", 0, found) and found:
        return found
    return _json_objects_in(data)


def _protobuf_fields(data: bytes, path: str, depth: int, found: list) -> bool:
    """True when all of data reads as protobuf fields; JSON strings are added to found."""
    pos = 0
    pending: list = []
    counts: dict = {}
    while pos < len(data):
        key, pos = _varint(data, pos)
        if key is None:
            return False
        number, wire = key >> 3, key & 7
        if number == 0:
            return False
        if wire == 0:
            _, pos = _varint(data, pos)
            if pos is None:
                return False
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _varint(data, pos)
            if size is None or pos + size > len(data):
                return False
            index = counts.get(number, 0)
            counts[number] = index + 1
            pending.append((f"{path}field{number}[{index}]", data[pos:pos + size]))
            pos += size
        else:
            return False
        if pos > len(data):
            return False
    for where, value in pending:
        if value[:1] == b"{":
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                continue
            found.append((where, text))
        elif depth < MAX_PROTOBUF_DEPTH and value:
            _protobuf_fields(value, where + ".", depth + 1, found)
    return True


def _varint(data: bytes, pos: int):
    result = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            return None, None
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
    return None, None


_JSON_START = re.compile(rb'\{\s*"')


def _json_objects_in(data: bytes) -> list[tuple[str, str]]:
    text = data.decode("latin-1")
    decoder = json.JSONDecoder()
    found = []
    position = 0
    for probe, match in enumerate(_JSON_START.finditer(data)):
        if probe >= MAX_JSON_PROBES:
            break
        if match.start() < position:
            continue
        try:
            value, end = decoder.raw_decode(text, match.start())
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict) and '"class_name"' in text[match.start():end]:
            found.append((f"offset {match.start()}", text[match.start():end]))
            position = end
    return found


# -- configs

def _parse_json(text: str, ctx: ScanContext, member: str | None, where: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        ctx.add_problem(member, f"Keras config {where} is not readable JSON: {_short(exc)}")
        return None


@dataclass
class _Walker:
    """Walks a config tree; each Lambda's code and each external name becomes evidence."""

    ctx: ScanContext
    member: str | None
    seen_code: set = field(default_factory=set)
    nodes: int = 0

    def walk(self, root, where: str) -> None:
        prefix = f"{where}: " if where else ""
        pending = [(root, "", None, 0)]
        while pending:
            node, path, layer, depth = pending.pop()
            self.nodes += 1
            if self.nodes % 4096 == 0:
                self.ctx.deadline.check()
            if self.nodes > MAX_CONFIG_NODES or depth > MAX_CONFIG_DEPTH:
                self.ctx.add_problem(self.member, f"Keras config {where or 'tree'} too large or too deep: "
                                                  f"not read past {path or 'its root'}")
                return
            if isinstance(node, dict):
                layer = _layer_name(node) or layer
                self.inspect(node, prefix + path, layer)
                children = [(value, f"{path}.{key}" if path else str(key)) for key, value in node.items()]
            elif isinstance(node, list):
                children = [(value, f"{path}[{i}]") for i, value in enumerate(node)]
            else:
                continue
            for value, child_path in reversed(children):
                if isinstance(value, (dict, list)):
                    pending.append((value, child_path, layer, depth + 1))

    # -- one object of the config

    def inspect(self, node: dict, path: str, layer: str | None) -> None:
        class_name = node.get("class_name")
        config = node.get("config")
        if class_name == "__lambda__" and isinstance(config, dict):
            self.lambda_config(config, _join(path, "config"), layer)
        if isinstance(config, dict):
            if class_name == "Lambda":
                self.keras2_lambda(config, _join(path, "config"), layer)
            if class_name in TF_OP_LAYERS:
                self.tf_op(config, _join(path, "config"), layer)
        module = node.get("module")
        if isinstance(module, str) and isinstance(class_name, str):
            name = _referenced_name(node, class_name)
            if name:
                self.reference(module, name, path, layer)
        fn = node.get("fn")
        if isinstance(fn, str) and "." in fn.strip("."):
            module_name, _, attribute = fn.strip().rpartition(".")
            self.reference(module_name, attribute, _join(path, "fn"), layer)

    def lambda_config(self, config: dict, path: str, layer: str | None) -> None:
        """Keras 3: {"code": base64, "defaults", "closure"} or {"value": [code, defaults, closure]}."""
        code = config.get("code")
        extras = [config.get("defaults"), config.get("closure")]
        where = _join(path, "code")
        if code is None and isinstance(config.get("value"), list) and config["value"]:
            code, *rest = config["value"]
            extras = rest
            where = _join(path, "value[0]")
        if code is not None:
            self.lambda_code(code, where, layer, extras)

    def keras2_lambda(self, config: dict, path: str, layer: str | None) -> None:
        """Keras 2: "function" is [code, defaults, closure] (function_type "lambda") or a
        function's name (function_type "function", its module under "module")."""
        for key, type_key, module_key in FUNCTION_KEYS:
            value = config.get(key)
            kind = config.get(type_key)
            where = _join(path, key)
            if isinstance(value, list) and value and isinstance(value[0], str) and kind in (None, "lambda"):
                self.lambda_code(value[0], f"{where}[0]", layer, value[1:])
            elif isinstance(value, str) and kind == "lambda":
                self.lambda_code(value, where, layer, [])
            elif isinstance(value, str) and kind == "function":
                module = config.get(module_key)
                self.reference(module if isinstance(module, str) and module else "builtins", value, where, layer)

    def tf_op(self, config: dict, path: str, layer: str | None) -> None:
        function = config.get("function")
        if not isinstance(function, str) or not function:
            return
        from ..rules import knowledge_base

        kb = knowledge_base()
        candidates = [f"tensorflow.{function}", function] if "." in function else [f"tensorflow.{function}"]
        for dotted in candidates:
            found = kb.classify(dotted)
            if found.kind == "dangerous":
                rule = found.rule
                self.ctx.add_finding(Finding(
                    "keras-tfop-dangerous", rule.severity, rule.category,
                    f"TensorFlow op layer {layer!r} calls {found.matched or dotted}: {rule.message} "
                    f"(at {_join(path, 'function')})",
                    self.ctx.location(self.member), function[:200]))
                return

    def reference(self, module: str, name: str, path: str, layer: str | None) -> None:
        """A module and a name the loader may import (CVE-2025-1550: before Keras 3.9, any)."""
        from ..rules import knowledge_base

        module, name = module.strip(), name.strip()
        if not module or not name:
            return
        found = knowledge_base().classify(module, name)
        dotted = f"{module}.{name}"
        if found.kind == "dangerous":
            severity, category, why = found.rule.severity, found.rule.category, found.rule.message
        elif found.kind == "safe" or _in_keras(module) or module == KERAS_BUILTINS_MODULE:
            return
        elif module == SCRIPT_MODULE:
            severity, category, why = (Severity.LOW, "unknown_global",
                                       "a custom object of the training script (its code must be supplied)")
        else:
            severity, category, why = (Severity.MEDIUM, "import_indirection",
                                       "a name outside Keras that loaders before Keras 3.9 import")
        where = f"layer {layer!r}, " if layer else ""
        self.ctx.add_finding(Finding(
            "keras-external-reference", severity, category,
            f"config names {dotted}: {why} ({where}at {path or 'the root'})",
            self.ctx.location(self.member), dotted[:300]))

    # -- Lambda bytecode

    def lambda_code(self, encoded, path: str, layer: str | None, extras: list) -> None:
        origin = f"Keras Lambda layer {layer!r} at {path}" if layer else f"Keras Lambda at {path}"
        if not isinstance(encoded, str) or len(encoded) > MAX_LAMBDA_CODE_CHARS:
            self.unreadable(path, origin, "the code is not a string of a readable size")
            return
        digest = hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()
        if digest in self.seen_code:
            return
        self.seen_code.add(digest)
        raw = _function_bytes(encoded)
        try:
            code = load_code(raw)
        except MarshalError as exc:
            self.unreadable(path, origin, str(exc))
            return
        lowered = lower(code)
        analyse_unit(Unit(lowered.source, "python", self.member, origin=origin), self.ctx)
        strings = list(lowered.strings) + [s for s in _strings_in(extras)]
        self.pattern_findings(strings)
        self.ctx.add_finding(Finding(
            "keras-lambda-code-present", Severity.INFO, "code_object",
            f"{origin} carries Python bytecode (runs when the model is loaded or called)",
            self.ctx.location(self.member), lowered.listing[:self.ctx.limits.max_evidence_chars]))

    def unreadable(self, path: str, origin: str, reason: str) -> None:
        self.ctx.add_problem(self.member, f"{origin}: code cannot be read ({reason[:300]})")
        self.ctx.add_finding(Finding(
            "keras-lambda-unreadable", Severity.MEDIUM, "code_object",
            f"{origin} carries code that could not be read", self.ctx.location(self.member),
            reason[:200]))

    def pattern_findings(self, strings: list[str]) -> None:
        from ..code.engine import _scan_text

        seen = {f.rule[len("pattern-"):] for f in self.ctx.findings
                if f.location.member == self.member and f.rule.startswith("pattern-")}
        for text in strings:
            for match in _scan_text(text):
                if match.rule in seen:
                    continue
                seen.add(match.rule)
                self.ctx.add_finding(Finding(
                    f"pattern-{match.rule}", Severity.INFO, match.category, match.description,
                    self.ctx.location(self.member), match.matched))


def _function_bytes(encoded: str) -> bytes:
    """As Keras' func_load reads it: base64, or else the raw string's code points."""
    try:
        return base64.decodebytes(encoded.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return encoded.encode("raw_unicode_escape")


def _strings_in(values, budget: int = 10_000) -> list[str]:
    out, pending = [], list(values)
    while pending and budget > 0:
        budget -= 1
        value = pending.pop()
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, dict):
            pending.extend(value.values())
    return out


def _layer_name(node: dict) -> str | None:
    config = node.get("config")
    if "class_name" in node and isinstance(config, dict) and isinstance(config.get("name"), str):
        return config["name"]
    return None


def _referenced_name(node: dict, class_name: str) -> str | None:
    """The name a {"module", "class_name", "config"} object makes the loader import."""
    if class_name == "function":
        config = node.get("config")
        return config if isinstance(config, str) else None
    if class_name == "__typespec__":
        spec = node.get("spec_name")
        return spec if isinstance(spec, str) else None
    if class_name.startswith("__") and class_name.endswith("__"):
        return None
    return class_name


def _in_keras(module: str) -> bool:
    return any(module == family or module.startswith(family + ".") for family in KERAS_FAMILIES)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
