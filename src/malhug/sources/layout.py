"""What a repository's layout says: its type, the role of each file, and the code its configs
make a loader fetch and run (dataset scripts, `auto_map` remote code, diffusers custom
pipelines, torch.hub entry points, pip requirements).

Configs are parsed with `json`, Python with `ast`; nothing is imported or run. Paths named
by configs are only looked up among the repository's own files, never on the filesystem.
"""
from __future__ import annotations

import ast
import json
import posixpath
import re
from collections import deque
from dataclasses import dataclass, field

from ..findings import Finding, Location, Severity
from .base import RepoFile, Repository
from .requirements import parse_requirements

MAX_READ_BYTES = 4 * 1024 * 1024  # configs, scripts and requirement files read here
MAX_FRONT_MATTER_BYTES = 256 * 1024
MAX_PYTHON_FILES = 1000  # modules parsed to follow imports
UNKNOWN_TYPES = ("folder", "", None)

AUTO_MAP_CONFIGS = {
    "config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json",
    "generation_config.json", "feature_extractor_config.json", "image_processor_config.json",
    "video_preprocessor_config.json", "adapter_config.json",
}
DIFFUSERS_INDEX = "model_index.json"
CONFIG_NAMES = AUTO_MAP_CONFIGS | {
    DIFFUSERS_INDEX, "dataset_infos.json", "dataset_dict.json", "dataset_info.json", "modules.json",
    "scheduler_config.json", "special_tokens_map.json", "tokenizer.json", "params.json",
    "config_sentence_transformers.json", "sentence_bert_config.json",
}
# Libraries a diffusers component may come from; any other name is looked for as a module here.
DIFFUSERS_LIBRARIES = {"diffusers", "transformers", "onnxruntime", "onnxruntime.training", "flax",
                       "optimum", "peft", "torch", "tokenizers", "sentencepiece", "keras_nlp"}
BUILDER_BASES = {"GeneratorBasedBuilder", "ArrowBasedBuilder", "DatasetBuilder", "BeamBasedBuilder"}
WEIGHT_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".hdf5", ".keras", ".onnx", ".msgpack",
    ".gguf", ".ggml", ".tflite", ".pb", ".pkl", ".pickle", ".joblib", ".dill", ".npz", ".mlmodel",
    ".ot", ".model", ".pdparams", ".nemo",
)
DATASET_FRONT_MATTER = ("configs", "dataset_info")
SPACE_FRONT_MATTER = ("sdk",)

# Roles, most telling first: a file keeps the first role it is given in this order.
ROLE_ORDER = ("dataset_script", "remote_code", "hubconf", "dataset_module", "remote_code_module",
              "hubconf_module", "requirements", "notebook", "config", "weights")
MODULE_ROLE = {"dataset_script": "dataset_module", "remote_code": "remote_code_module",
               "hubconf": "hubconf_module"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*)?$")


@dataclass
class Layout:
    type: str | None = None  # model | dataset | space, when the layout tells
    roles: dict = field(default_factory=dict)  # path -> role
    findings: list = field(default_factory=list)  # Finding about the repository itself
    problems: list = field(default_factory=list)  # (path or None, reason)
    cross_repo: list = field(default_factory=list)  # hub repositories whose code a config names


def analyse_layout(repo: Repository) -> Layout:
    return _Analysis(repo).run()


@dataclass(frozen=True)
class _Reference:
    """A class a config names: `module.Class`, optionally in another repository."""

    config: str  # the config's path
    key: str  # where in the config (auto_map.AutoModel, custom_pipeline ...)
    text: str  # the reference as written
    module: str
    cls: str | None
    other_repo: str | None = None


class _Analysis:
    def __init__(self, repo: Repository):
        self.repo = repo
        self.layout = Layout()
        self.files = {f.path: f for f in repo.files}
        self.texts: dict[str, str | None] = {}
        self.trees: dict[str, ast.Module | None] = {}
        self.reported: set = set()
        self.evidence: dict[str, bool] = {"dataset": False, "model": False, "space": False}

    def run(self) -> Layout:
        self._name_roles()
        self._front_matter()
        self._dataset_scripts()
        self._configs()
        self._hubconf()
        self._requirements()
        self._follow_imports()
        self.layout.type = self._type()
        return self.layout

    # roles and type

    def _assign(self, path: str, role: str) -> bool:
        current = self.layout.roles.get(path)
        if current is not None and ROLE_ORDER.index(current) <= ROLE_ORDER.index(role):
            return False
        self.layout.roles[path] = role
        return True

    def _name_roles(self) -> None:
        for path in self.files:
            name = posixpath.basename(path).lower()
            if name.endswith(".ipynb"):
                self._assign(path, "notebook")
            elif name in CONFIG_NAMES or name.endswith("config.json"):
                self._assign(path, "config")
            elif name.endswith(WEIGHT_SUFFIXES):
                self._assign(path, "weights")
                self.evidence["model"] = True
            if path in ("dataset_infos.json", "dataset_dict.json"):
                self.evidence["dataset"] = True

    def _type(self) -> str | None:
        if self.repo.type not in UNKNOWN_TYPES:
            return self.repo.type
        for kind in ("space", "dataset", "model"):
            if self.evidence[kind]:
                return kind
        return None

    def _front_matter(self) -> None:
        readme = self.files.get("README.md")
        if readme is None:
            return
        text = self._read(readme, MAX_FRONT_MATTER_BYTES, whole=False)
        text = (text or "").lstrip("\ufeff")
        if not text.startswith("---"):
            return
        end = re.search(r"^---\s*$", text[3:], re.M)
        block = text[3:3 + end.start()] if end else ""
        keys = set(re.findall(r"^([A-Za-z_][\w-]*)\s*:", block, re.M))
        if keys & set(SPACE_FRONT_MATTER):
            self.evidence["space"] = True
        if keys & set(DATASET_FRONT_MATTER):
            self.evidence["dataset"] = True

    # dataset scripts

    def _dataset_scripts(self) -> None:
        for path in self.files:
            if not path.endswith(".py"):
                continue
            tree = self._tree(path)
            if tree is not None and _builder_classes(tree):
                self._assign(path, "dataset_script")
                self.evidence["dataset"] = True

    # configs

    def _configs(self) -> None:
        for path in sorted(self.files):
            name = posixpath.basename(path)
            if name not in AUTO_MAP_CONFIGS and name != DIFFUSERS_INDEX:
                continue
            data = self._json(path)
            if data is None:
                continue
            if name == "config.json" and isinstance(data, dict) and \
                    ("model_type" in data or "architectures" in data or "auto_map" in data):
                self.evidence["model"] = True
            for key, value in _auto_maps(data):
                for text in _class_references(value):
                    self._reference(path, key, text)
            if name == DIFFUSERS_INDEX and isinstance(data, dict):
                self.evidence["model"] = True
                self._diffusers_index(path, data)
            for key, value in _custom_pipelines(data):
                self._custom_pipeline(path, key, value)

    def _reference(self, config: str, key: str, text: object) -> None:
        if text is None:
            return
        if not isinstance(text, str) or "." not in text:
            self._finding(config, "repo-malformed-auto-map", Severity.INFO, "code_exec",
                          f"{key} holds {json.dumps(text)[:80]}, which is not a `module.Class` reference",
                          json.dumps(text)[:200])
            return
        other_repo = None
        reference = text
        if "--" in text:
            other_repo, reference = text.split("--", 1)
        module, _, cls = reference.rpartition(".")
        self._resolve(_Reference(config, key, text, module, cls, other_repo))

    def _resolve(self, ref: _Reference) -> str | None:
        """The repository file a reference runs, reporting what cannot be followed."""
        if ref.other_repo is not None:
            return self._cross_repo(ref)
        escape = _escape(ref.module, posixpath.dirname(ref.config))
        if escape:
            self._escape_finding(ref, escape)
            return None
        path = self._module_file(ref.module, posixpath.dirname(ref.config))
        if path is None:
            self._finding(ref.config, "repo-missing-remote-code", Severity.MEDIUM, "code_exec",
                          f"{ref.key} names module {ref.module} ({ref.text}), which is not in the repository",
                          ref.text, anchor=ref.module)
            self._problem(ref.config, f"the code {ref.key} names ({ref.module}.py) is not in the repository: "
                                      f"what would run cannot be checked")
            return None
        self._assign(path, "remote_code")
        if ref.cls:
            self._check_class(ref, path)
        return path

    def _cross_repo(self, ref: _Reference) -> None:
        other = ref.other_repo
        if not HUB_ID.match(other) or ".." in other.split("/"):
            self._escape_finding(ref, f"repository name {other!r} is not a hub id")
            return None
        escape = _escape(ref.module, "")
        if escape:
            self._escape_finding(ref, escape)
        if other not in self.layout.cross_repo:
            self.layout.cross_repo.append(other)
        reference = ref.text.split("--", 1)[1]
        self._finding(ref.config, "repo-cross-repo-code", Severity.MEDIUM, "code_exec",
                      f"remote code is taken from another repository: {other} ({reference})", ref.text)
        return None

    def _escape_finding(self, ref: _Reference, why: str) -> None:
        self._finding(ref.config, "repo-path-escape", Severity.HIGH, "tampering",
                      f"{ref.key} names code outside the repository: {ref.text} ({why})", ref.text,
                      anchor=ref.module)

    def _module_file(self, module: str, folder: str) -> str | None:
        """The file a module name loads: `m.py`, `a/b.py` for `a.b`, beside the config or at the top."""
        names = [module, module.replace(".", "/")] if "/" not in module else [module]
        for base in dict.fromkeys([folder, ""]):
            for name in names:
                for candidate in (f"{name}.py", f"{name}/__init__.py"):
                    path = posixpath.normpath(posixpath.join(base, candidate))
                    if path in self.files:
                        return path
        return None

    def _check_class(self, ref: _Reference, path: str) -> None:
        tree = self._tree(path)
        if tree is None:
            return  # unreadable or unparsable: the file's own scan reports it
        defined, star = _defined_names(tree)
        if ref.cls in defined or star:
            return
        self._finding(ref.config, "repo-remote-class-missing", Severity.LOW, "code_exec",
                      f"{ref.key} names class {ref.cls}, which {path} does not define", ref.text,
                      anchor=ref.module)

    def _diffusers_index(self, config: str, data: dict) -> None:
        folder = posixpath.dirname(config)
        for key, value in data.items():
            if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
                continue
            library, cls = value
            if library in DIFFUSERS_LIBRARIES:
                continue
            text = f"{library}.{cls}"
            ref = _Reference(config, key, text, library, cls)
            escape = _escape(library, folder)
            if escape:
                self._escape_finding(ref, escape)
                continue
            component = posixpath.join(folder, key) if key != "_class_name" else folder
            path = self._module_file(library, component) or self._module_file(library, folder)
            if path is not None:
                self._assign(path, "remote_code")
                self._check_class(ref, path)
            elif key == "_class_name":
                self._resolve(_Reference(config, key, text, library, cls))

    def _custom_pipeline(self, config: str, key: str, value: object) -> None:
        if not isinstance(value, str) or not value:
            return
        folder = posixpath.dirname(config)
        module = value[:-3] if value.endswith(".py") else value
        ref = _Reference(config, key, value, module, None)
        escape = _escape(module, folder)
        if escape:
            self._escape_finding(ref, escape)
            return
        path = self._module_file(module, folder) if "/" not in module else \
            self._module_file(module, "")
        if path is not None:
            self._assign(path, "remote_code")
        elif HUB_ID.match(value) and "/" in value:
            self._cross_repo(_Reference(config, key, f"{value}--pipeline", "pipeline", None, value))
        else:
            self._finding(config, "repo-cross-repo-code", Severity.MEDIUM, "code_exec",
                          f"remote code is taken from another repository: the diffusers community "
                          f"pipeline {value} ({key})", value)

    # torch.hub and pip

    def _hubconf(self) -> None:
        if "hubconf.py" in self.files:
            self._assign("hubconf.py", "hubconf")

    def _requirements(self) -> None:
        queue = deque(p for p in sorted(self.files) if _is_requirements(p))
        seen = set()
        while queue:
            path = queue.popleft()
            if path in seen:
                continue
            seen.add(path)
            self._assign(path, "requirements")
            text = self._read(self.files[path], MAX_READ_BYTES)
            if text is None:
                continue
            for entry in parse_requirements(text):
                if entry.source:
                    self._finding(path, "repo-requirement-outside-index", Severity.MEDIUM, "download_exec",
                                  f"installs a package from outside the package index: {entry.source}",
                                  entry.text, line=entry.line)
                elif entry.include:
                    included = self._included(path, entry)
                    if included:
                        queue.append(included)
                elif entry.unparsed:
                    self._finding(path, "repo-requirement-unparsed", Severity.INFO, "download_exec",
                                  "a requirement line that is neither a package name nor a known option",
                                  entry.text, line=entry.line)

    def _included(self, path: str, entry) -> str | None:
        escape = _escape(entry.include, posixpath.dirname(path), module=False)
        if escape:
            self._finding(path, "repo-path-escape", Severity.HIGH, "tampering",
                          f"includes a requirement file outside the repository: {entry.include} ({escape})",
                          entry.text, line=entry.line)
            return None
        included = posixpath.normpath(posixpath.join(posixpath.dirname(path), entry.include))
        if included not in self.files:
            self._finding(path, "repo-requirement-include-missing", Severity.INFO, "download_exec",
                          f"includes {entry.include}, which is not in the repository", entry.text,
                          line=entry.line)
            return None
        return included

    # imports

    def _follow_imports(self) -> None:
        """Repository modules the scripts and remote code import, transitively."""
        queue = deque((path, MODULE_ROLE[role]) for path, role in sorted(self.layout.roles.items())
                      if role in MODULE_ROLE)
        visited = set()
        while queue and len(visited) < MAX_PYTHON_FILES:
            path, role = queue.popleft()
            if (path, role) in visited:
                continue
            visited.add((path, role))
            tree = self._tree(path)
            if tree is None:
                continue
            for target in self._imported(path, tree):
                if target != path:
                    self._assign(target, role)
                    queue.append((target, role))

    def _imported(self, path: str, tree: ast.Module) -> list[str]:
        folder = posixpath.dirname(path)
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                found += self._import_from(folder, node)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    found += self._absolute(folder, alias.name, ())
        return list(dict.fromkeys(found))

    def _import_from(self, folder: str, node: ast.ImportFrom) -> list[str]:
        names = tuple(a.name for a in node.names if a.name != "*")
        if node.level == 0:
            return self._absolute(folder, node.module or "", names)
        base = folder
        for _ in range(node.level - 1):
            if not base:
                return []  # above the top: no repository file can answer
            base = posixpath.dirname(base)
        prefix = posixpath.join(base, *(node.module or "").split(".")) if node.module else base
        return self._package_files(prefix, names)

    def _absolute(self, folder: str, module: str, names: tuple) -> list[str]:
        if not module:
            return []
        found = []
        for base in dict.fromkeys([folder, ""]):
            found += self._package_files(posixpath.join(base, *module.split(".")), names)
            if found:
                break
        return found

    def _package_files(self, prefix: str, names: tuple) -> list[str]:
        """`prefix.py` or `prefix/__init__.py` (with the packages above it), and submodules named."""
        found = [c for c in (f"{prefix}.py", f"{prefix}/__init__.py") if c in self.files]
        if found:
            parts = prefix.split("/")
            for length in range(1, len(parts)):
                init = "/".join(parts[:length]) + "/__init__.py"
                if init in self.files:
                    found.append(init)
        for name in names:
            found += [c for c in (f"{prefix}/{name}.py", f"{prefix}/{name}/__init__.py") if c in self.files]
        return found

    # reading

    def _read(self, file: RepoFile, limit: int, whole: bool = True) -> str | None:
        if file.problem:
            return None  # the file's own result reports why
        if whole and file.size is not None and file.size > limit:
            self._problem(file.path, f"{file.path} is larger than {limit} bytes: what it names is not checked")
            return None
        try:
            with file.open() as stream:
                raw = stream.read(limit + 1)
        except OSError:
            return None  # the file's own scan reports it
        if whole and len(raw) > limit:
            self._problem(file.path, f"{file.path} is larger than {limit} bytes: what it names is not checked")
            return None
        return raw.decode("utf-8", "replace")

    def _json(self, path: str):
        text = self._read(self.files[path], MAX_READ_BYTES)
        if text is None:
            return None
        self.texts[path] = text
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            self._problem(path, f"{posixpath.basename(path)} is not valid JSON: {_short(exc)}")
            return None

    def _tree(self, path: str) -> ast.Module | None:
        if path in self.trees:
            return self.trees[path]
        tree = None
        if len(self.trees) >= MAX_PYTHON_FILES:
            self._problem(None, f"more than {MAX_PYTHON_FILES} Python files: the roles of the rest "
                                f"(dataset scripts, imported modules) are not worked out")
        else:
            text = self._read(self.files[path], MAX_READ_BYTES)
            if text is not None:
                try:
                    tree = ast.parse(text)
                except (SyntaxError, ValueError, RecursionError, MemoryError):
                    tree = None  # the file's own scan reports it
        self.trees[path] = tree
        return tree

    # reporting

    def _finding(self, path: str, rule: str, severity: Severity, category: str, message: str,
                 evidence: str, line: int | None = None, anchor: str | None = None) -> None:
        key = (rule, path, message)
        if key in self.reported:
            return
        self.reported.add(key)
        if line is None:
            line = _line_of(self.texts.get(path), [evidence, anchor])
        location = Location(file=self.repo.display_path(path), member=None, offset=None, line=line)
        self.layout.findings.append(Finding(rule, severity, category, message, location, evidence[:400]))

    def _problem(self, path: str | None, reason: str) -> None:
        if (path, reason) not in self.layout.problems:
            self.layout.problems.append((path, reason))


def _auto_maps(data, where: str = ""):
    """Every `auto_map` in a config (top level or nested), as (key, value) pairs."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "auto_map" and isinstance(value, dict):
                for name, target in value.items():
                    yield f"{where}auto_map.{name}", target
            elif isinstance(value, (dict, list)):
                yield from _auto_maps(value, f"{where}{key}.")
    elif isinstance(data, list):
        for item in data:
            yield from _auto_maps(item, where)


def _class_references(value) -> list:
    """`module.Class`, or a `[slow, fast]` pair whose entries may be null."""
    if isinstance(value, list):
        return list(value)
    return [value]


def _custom_pipelines(data):
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("custom_pipeline", "custom_pipelines"):
                values = value if isinstance(value, list) else \
                    list(value.values()) if isinstance(value, dict) else [value]
                for item in values:
                    yield key, item
            elif isinstance(value, (dict, list)):
                yield from _custom_pipelines(value)
    elif isinstance(data, list):
        for item in data:
            yield from _custom_pipelines(item)


def _escape(name: str, folder: str, module: bool = True) -> str | None:
    """Why a module or file name leaves the repository, or None when it stays inside."""
    path = name.replace("\\", "/")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path) or path.startswith("~"):
        return "an absolute path"
    if "\x00" in path:
        return "a NUL byte in the name"
    if module and "/" not in path:
        return None
    if ".." not in path.split("/"):
        return None
    joined = posixpath.normpath(posixpath.join(folder, path))
    if joined == ".." or joined.startswith("../") or \
            posixpath.normpath(path) == ".." or posixpath.normpath(path).startswith("../"):
        return "a path leaving the repository"
    return None


def _is_requirements(path: str) -> bool:
    name = posixpath.basename(path).lower()
    if name == "requirements.txt":
        return True
    return "/" not in path and name.startswith("requirements") and name.endswith(".txt")


def _builder_classes(tree: ast.Module) -> list[str]:
    """Classes deriving (directly or through each other) from a `datasets` builder."""
    classes = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    builders: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, node in classes.items():
            if name in builders:
                continue
            if any(_base_name(b) in BUILDER_BASES or _base_name(b) in builders for b in node.bases):
                builders.add(name)
                changed = True
    return sorted(builders)


def _base_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _defined_names(tree: ast.Module) -> tuple[set, bool]:
    """Names a module defines at its top (classes, assignments, imports), and whether it
    star-imports (then any name may be there)."""
    names: set[str] = set()
    star = False
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    star = True
                else:
                    names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)) or \
                type(node).__name__ == "TryStar":
            for part in ("body", "orelse", "finalbody"):
                pending.extend(getattr(node, part, []))
            for handler in getattr(node, "handlers", []):
                pending.extend(handler.body)
    return names, star


def _line_of(text: str | None, anchors: list) -> int | None:
    """The line of a config where a reference is written (its JSON string, or auto_map)."""
    if not text:
        return None
    needles = [json.dumps(a) for a in anchors if a] + [a for a in anchors if a] + ['"auto_map"']
    for needle in needles:
        if needle:
            index = text.find(needle)
            if index >= 0:
                return text.count("\n", 0, index) + 1
    return None


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 160 else text[:160] + "…"
