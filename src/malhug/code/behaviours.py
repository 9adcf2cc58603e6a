"""What the code would do: sink events and their taint, classified into behaviours.

Two policies. Code that runs when a model is deserialized (a pickle program) should only
rebuild data, so every dangerous callable is already reported one by one; here only the
composite behaviours are added (reverse shell, download and execute, exfiltration ...).
Python source (dataset scripts, remote code) does ordinary I/O, so only what it should never
do is reported: running commands or decoded code, sending secrets or host facts away, writing
where code runs again later, monkey-patching libraries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..findings import Severity
from .interpret import Analysis, Event
from .knowledge import FlowKnowledge, flow_knowledge
from .paths import path_text
from .values import AValue, union_taint

COMPOSITE = {"reverse_shell", "download_exec", "credential_theft", "recon_exfil", "persistence",
             "crypto_mining", "model_tamper"}
# Tells what a command line does (reverse shell, miner ...) from its text, or None.
ShellMatcher = Callable[[str], "str | None"]
WRITE_MODES = set("wax+")
CONNECT_NAMES = ("socket.socket.connect", "socket.socket.connect_ex", "socket.create_connection")
FILE_WRITE_CALLS = ("io.file.write", "io.file.writelines")
# In Python source only these run commands or code; the rest of the pickle knowledge base
# (type(), threads, process pools, debuggers' helpers ...) is ordinary there.
NOT_COMMANDS_IN_SOURCE = ("multiprocessing.", "threading.", "os.fork", "os.kill", "signal.", "asyncio.",
                          "concurrent.")
CODE_RUNNERS_IN_SOURCE = ("builtins.exec", "builtins.eval", "builtins.compile", "builtins.execfile",
                          "runpy.", "code.", "codeop.", "timeit.", "pdb.run", "cProfile.run", "profile.run",
                          "doctest.debug", "dataclasses._create_fn", "typing._eval_type", "marshal.",
                          "numpy.testing._private.utils.runstring", "dill._dill._create_code",
                          "dill._dill._create_function", "types.CodeType")
NATIVE_IN_SOURCE = ("ctypes.", "cffi.", "_ctypes.", "torch.ops.load_library", "torch.classes.load_library")
CREATES_ONLY = ("os.mkdir", "os.makedirs", "pathlib.Path.mkdir", "pathlib.Path.touch", "tempfile.")
DESTRUCTIVE = ("os.remove", "os.unlink", "os.rmdir", "os.removedirs", "shutil.rmtree", "shutil.move",
               "os.rename", "os.replace", "os.truncate", "pathlib.Path.unlink", "pathlib.Path.rmdir")


@dataclass(frozen=True)
class Behaviour:
    category: str
    severity: Severity
    message: str
    line: int
    name: str
    context: str
    hidden: bool


def classify(analysis: Analysis, unit_kind: str, shell_matcher: ShellMatcher | None = None,
             flows: FlowKnowledge | None = None, decoded: bool = False) -> list[Behaviour]:
    """decoded: the unit is code that was hidden by an encoding (a print there proves execution)."""
    flows = flows or flow_knowledge()
    events = analysis.events
    unit = _UnitFacts(
        has_connect=any(e.name in CONNECT_NAMES or e.name.startswith("socket.") and e.name.endswith(".connect")
                        for e in events),
        downloaded=_downloaded_paths(events),
        decoded=decoded,
    )
    out: list[Behaviour] = []
    for event in events:
        behaviour = _classify_event(event, unit_kind, flows, unit, shell_matcher or (lambda text: None))
        if behaviour is None:
            continue
        if unit_kind == "pickle" and behaviour.category not in COMPOSITE:
            continue
        out.append(behaviour)
    return _dedupe(out)


@dataclass(frozen=True)
class _UnitFacts:
    has_connect: bool
    downloaded: frozenset
    decoded: bool


def _downloaded_paths(events) -> frozenset:
    """Files the code fills with data from the network (to run them later)."""
    paths = set()
    for event in events:
        kinds = {t.kind for t in union_taint(list(event.args) + list(event.kwargs.values()))}
        if event.name in ("io.file.write", "io.file.writelines") and "network" in kinds:
            path = _path_of(event)
            if path:
                paths.add(path)
        if event.name in ("urllib.request.urlretrieve",) and len(event.args) > 1:
            path = path_text(event.args[1])
            if path:
                paths.add(path)
    return frozenset(paths)


def _classify_event(event: Event, unit_kind: str, flows: FlowKnowledge, unit: _UnitFacts,
                    shell_matcher: ShellMatcher) -> Behaviour | None:
    has_connect = unit.has_connect
    category = event.category
    kinds = {t.kind for t in union_taint(list(event.args) + list(event.kwargs.values()))}
    name = event.name
    where = _where(event.context)

    def make(behaviour: str, severity: Severity, message: str) -> Behaviour:
        return Behaviour(behaviour, _adjust(severity, event), message + where, event.line, name,
                         event.context, event.hidden)

    if unit_kind != "pickle" and name.startswith(NOT_COMMANDS_IN_SOURCE):
        return None
    if category in ("command_exec", "native_code") or name.startswith("pty."):
        command = _command_text(event)
        program_kinds = _program_taint(event)
        shell_match = shell_matcher(command) if command else None
        if _is_fd_dup(event) or name.startswith("pty."):
            if has_connect:
                return make("reverse_shell", Severity.CRITICAL,
                            f"ties a shell to a network connection ({name})")
            return make("command_exec", Severity.HIGH, f"{event.message} ({name})")
        if "network" in program_kinds or any(path in command for path in unit.downloaded):
            return make("download_exec", Severity.CRITICAL,
                        f"runs a program or command fetched from the network ({name})")
        if shell_match:
            return make(shell_match, _SHELL_SEVERITY[shell_match],
                        f"{_SHELL_MESSAGE[shell_match]}: {_quote(command)} ({name})")
        if has_connect and ("socket" in program_kinds or _stdio_from_socket(event)):
            return make("reverse_shell", Severity.CRITICAL, f"runs a shell on a network connection ({name})")
        if name.startswith("webbrowser."):
            return make("poc", Severity.MEDIUM, f"opens a web browser ({name})")
        if unit_kind == "pickle":
            return None
        if category == "native_code":
            if not name.startswith(NATIVE_IN_SOURCE):
                return None
            severity = Severity.HIGH if unit_kind == "torchscript" else Severity.MEDIUM
            return make("command_exec", severity, f"{event.message} ({name})")
        if "decoded" in program_kinds or event.hidden:
            return make("command_exec", Severity.CRITICAL, f"runs a hidden command {_quote(command)} ({name})")
        return make("command_exec", Severity.HIGH, f"runs {_quote(command) if command != 'None' else ''}"
                    f"{'' if command and command != 'None' else 'a command'} ({name})")

    if name == "builtins.print":
        if unit.decoded:
            return make("poc", Severity.MEDIUM, "prints from code hidden by encoding (a proof of code execution)")
        return None

    if category in ("code_exec", "code_object"):
        if unit_kind != "pickle" and not name.startswith(CODE_RUNNERS_IN_SOURCE):
            return None
        if "network" in kinds:
            return make("download_exec", Severity.CRITICAL, f"runs code fetched from the network ({name})")
        if unit_kind == "pickle" or name == "builtins.input":
            return None
        if name in ("builtins.exit", "builtins.quit", "sys.exit", "os._exit", "threading.Thread",
                    "threading.Timer") or name.startswith(("threading.", "atexit.", "logging.config")):
            return None
        if category == "code_object":
            return make("code_exec", Severity.HIGH, f"{event.message} ({name})")
        if "decoded" in kinds or event.hidden:
            return make("code_exec", Severity.HIGH, f"runs code hidden by encoding ({name})")
        if event.code is not None:
            return make("code_exec", Severity.MEDIUM, f"runs code from a string ({name})")
        if name in ("builtins.eval", "builtins.exec", "builtins.compile", "builtins.execfile") or \
                name.startswith(("runpy.", "code.", "codeop.")):
            return make("code_exec", Severity.MEDIUM, f"runs code computed at run time ({name})")
        return None

    if category == "network" or flows.is_egress(name):
        if not flows.is_egress(name):
            return None
        kinds = _outbound_kinds(event, flows)
        if kinds & {"secret"}:
            return make("credential_theft", Severity.CRITICAL,
                        f"sends secrets ({_origins(event, {'secret'})}) over the network ({name})")
        if kinds & {"env", "sysinfo", "listing"}:
            return make("recon_exfil", Severity.HIGH,
                        f"sends host facts ({_origins(event, {'env', 'sysinfo', 'listing'})}) over the network ({name})")
        return None

    if category in ("file_write", "file_read") or name in DESTRUCTIVE:
        path = _path_of(event)
        writes = category == "file_write" or _open_mode_writes(event)
        if not writes or path is None:
            return None
        if flows.is_persistence_path(path):
            return make("persistence", Severity.HIGH, f"writes {path}, which makes code run again later ({name})")
        if unit_kind == "pickle":
            return None
        if name in FILE_WRITE_CALLS or name.startswith(CREATES_ONLY):
            return None  # the open() that made the file is judged instead; new folders harm nothing
        mass_or_precious = "*" in path or any(k in path for k in (".ssh", "huggingface", "site-packages"))
        if name in ("os.chmod", "pathlib.Path.chmod") and _mode_is_loose(event):
            severity = Severity.HIGH if flows.is_sensitive_path(path) else Severity.MEDIUM
            return make("file_tamper", severity, f"makes {path} writable or executable by anyone ({name})")
        if flows.is_sensitive_path(path):
            verb = "deletes" if name in DESTRUCTIVE or "rmtree" in name else "changes"
            severity = Severity.HIGH if mass_or_precious else Severity.MEDIUM
            return make("file_tamper", severity, f"{verb} {path} ({name})")
        return None

    if category == "tampering" and event.kind == "store":
        if unit_kind == "pickle":
            return None
        value = event.args[0] if event.args else None
        if name.startswith(("os.environ", "sys.path")):
            return None
        if not flows.is_tamper_target(name):
            return None
        # a callable put in place of another is a patch; a plain value is configuration
        if name.startswith("sys.modules") or _is_callable_value(value):
            return make("model_tamper", Severity.HIGH, f"replaces {name} in the running process")
        return None
    if category == "tampering" and name in ("builtins.setattr",) and unit_kind != "pickle":
        target = event.args[0] if event.args else None
        value = event.args[2] if len(event.args) > 2 else None
        if isinstance(target, AValue) and target.name and flows.is_tamper_target(target.name) and \
                _is_callable_value(value):
            return make("model_tamper", Severity.HIGH, f"replaces an attribute of {target.name} in the running process")
    return None


def _is_callable_value(value) -> bool:
    """A function, or a named object that is not a module constant (`mmap.MAP_SHARED`)."""
    if not isinstance(value, AValue):
        return False
    if value.func is not None:
        return True
    last = (value.name or "").rsplit(".", 1)[-1]
    return bool(last) and not last.isupper()


def _outbound_kinds(event: Event, flows: FlowKnowledge) -> set[str]:
    """Taint of what a network call sends: not its local arguments (a download's destination)."""
    local = flows.local_arguments.get(event.name, ())
    values = [v for i, v in enumerate(event.args) if str(i) not in local]
    values += [v for k, v in event.kwargs.items() if k not in local]
    return {t.kind for t in union_taint(values)}


def _where(context: str) -> str:
    return {
        "import": " when the code is loaded",
        "builder": " while the dataset is built",
        "thread": " in a background thread",
        "main": " when run as a script",
    }.get(context, "")


def _adjust(severity: Severity, event: Event) -> Severity:
    if event.context == "main" and severity > Severity.LOW:
        return Severity(severity - 1)
    return severity


def _is_fd_dup(event: Event) -> bool:
    return event.name in ("os.dup2", "os.dup", "os.dup3")


def _command_text(event: Event) -> str:
    if not event.args:
        value = event.kwargs.get("args")
    else:
        value = event.args[0]
    if not isinstance(value, AValue):
        return ""
    if value.known:
        if isinstance(value.const, (list, tuple)):
            return " ".join(str(part) for part in value.const)
        return str(value.const) if not isinstance(value.const, bytes) else value.const.decode("utf-8", "replace")
    if value.items:
        return " ".join(str(item.const) if item.known else "…" for item in value.items)
    return ""


def _program_taint(event: Event) -> set[str]:
    """Where the command line came from: any part of it (`sh <downloaded file>` counts)."""
    value = event.args[0] if event.args else event.kwargs.get("args")
    if not isinstance(value, AValue):
        return set()
    return {t.kind for t in union_taint([value])}


def _stdio_from_socket(event: Event) -> bool:
    return any(isinstance(v, AValue) and (v.instance == "socket.socket" or "socket" in v.kinds())
               for k, v in event.kwargs.items() if k in ("stdin", "stdout", "stderr"))


_SHELL_SEVERITY = {"reverse_shell": Severity.CRITICAL, "download_exec": Severity.CRITICAL,
                   "crypto_mining": Severity.CRITICAL, "persistence": Severity.HIGH, "poc": Severity.MEDIUM}
_SHELL_MESSAGE = {"reverse_shell": "opens a reverse shell", "download_exec": "downloads and runs a program",
                  "crypto_mining": "starts a cryptocurrency miner", "persistence": "installs itself to run again later",
                  "poc": "runs a harmless proof of code execution"}


def _quote(command: str) -> str:
    return f"`{command[:120]}`" if command else ""


def _origins(event: Event, kinds: set) -> str:
    found = sorted({t.origin for t in union_taint(list(event.args) + list(event.kwargs.values())) if t.kind in kinds})
    return ", ".join(found[:4]) or "data"


def _path_of(event: Event) -> str | None:
    for value in (event.receiver,) + tuple(event.args[:1]):
        text = path_text(value)
        if text:
            return text
    for key in ("file", "path", "dst", "name"):
        text = path_text(event.kwargs.get(key))
        if text:
            return text
    return None


def _open_mode_writes(event: Event) -> bool:
    if event.name not in ("builtins.open", "io.open", "codecs.open", "pathlib.Path.open", "os.open"):
        return False
    mode = event.args[1] if len(event.args) > 1 else event.kwargs.get("mode")
    if isinstance(mode, AValue) and mode.known:
        if isinstance(mode.const, str):
            return bool(WRITE_MODES & set(mode.const))
        if isinstance(mode.const, int):
            return bool(mode.const & 0o3)  # os.O_WRONLY / os.O_RDWR
    return False


def _mode_is_loose(event: Event) -> bool:
    mode = event.args[1] if len(event.args) > 1 else event.kwargs.get("mode")
    return isinstance(mode, AValue) and isinstance(mode.const, int) and bool(mode.const & 0o022 or mode.const & 0o111)


def _dedupe(behaviours: list[Behaviour]) -> list[Behaviour]:
    seen = set()
    out = []
    for behaviour in sorted(behaviours, key=lambda b: (-b.severity, b.line)):
        key = (behaviour.category, behaviour.line)
        if key in seen:
            continue
        seen.add(key)
        out.append(behaviour)
    return sorted(out, key=lambda b: b.line)
