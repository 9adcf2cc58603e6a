"""What each rule id means, for reports that describe their rules (SARIF, HTML, Markdown)."""
from __future__ import annotations

from dataclasses import dataclass

SCAN_INCOMPLETE = "scan-incomplete"


@dataclass(frozen=True)
class RuleText:
    short: str
    full: str


_RULES = {
    "pickle-dangerous-callable": RuleText(
        "Pickle calls a dangerous callable",
        "The pickle stream imports or calls a callable the knowledge base lists as dangerous: loading "
        "it runs that callable. Severity and category come from the knowledge base entry."),
    "pickle-unknown-global": RuleText(
        "Pickle imports an unknown global",
        "The pickle imports something that is neither known to be safe nor known to be dangerous. "
        "Loading it imports and may call code nobody has reviewed."),
    "pickle-dynamic-import": RuleText(
        "Pickle computes what it imports",
        "A STACK_GLOBAL takes its module or name from a value computed earlier in the stream, "
        "which hides what the load imports."),
    "pickle-indirect-call": RuleText(
        "Pickle calls a computed value",
        "The pickle calls a value produced by an earlier call at load time, a way to reach "
        "callables without naming them."),
    "pickle-object-tampering": RuleText(
        "Pickle modifies an imported object",
        "BUILD, SETITEM or APPEND applied to an imported object: monkey-patching or editing "
        "interpreter state such as sys.modules while loading."),
    "pickle-extension-import": RuleText(
        "Pickle imports through an extension code",
        "An import through the EXT opcodes and the copyreg extension registry."),
    "pickle-anomaly": RuleText(
        "Pickle stream anomaly",
        "Informational: data after the last pickle and similar oddities of the stream's shape."),
    "python-shell-escape": RuleText(
        "Notebook runs a shell command",
        "A notebook cell runs a shell command through a `!` escape when the cell runs."),
    "torchscript-import": RuleText(
        "TorchScript code imports a module",
        "Compiled TorchScript never imports modules; an import in its code/ was added by hand."),
    "hostile-shape": RuleText(
        "Input built to exhaust a scanner or loader",
        "A decompression bomb, a memo expansion or a similar shape meant to exhaust memory or time."),
    "zip-local-only-member": RuleText(
        "Zip member hidden from the central directory",
        "A zip member present only in a local header: other readers do not list it."),
    "zip-header-mismatch": RuleText(
        "Zip headers disagree",
        "The local and central headers of a member disagree, so readers see different content."),
    "zip-false-encryption-flag": RuleText(
        "Zip member falsely flagged as encrypted",
        "The encryption flag is set on a member that is not encrypted, which makes some scanners skip it."),
    "repo-missing-remote-code": RuleText(
        "Remote code named by auto_map is missing",
        "A configuration names a code module the repository does not contain."),
    "repo-remote-class-missing": RuleText(
        "Remote code class is missing",
        "An auto_map entry names a class its module does not define."),
    "repo-cross-repo-code": RuleText(
        "Code taken from another repository",
        "Loading this repository runs code from another hub repository (org/repo--module.Class)."),
    "repo-path-escape": RuleText(
        "Path leaves the repository",
        "A configuration points at a code path outside the repository."),
    "repo-malformed-auto-map": RuleText(
        "Malformed auto_map entry",
        "An auto_map entry that loaders may read differently from what it appears to say."),
    "repo-requirement-outside-index": RuleText(
        "Requirement installed from outside the package index",
        "requirements.txt installs from a VCS, a URL, an extra index or a local path."),
    "repo-requirement-unparsed": RuleText(
        "Requirement line not understood",
        "A requirements.txt line that could not be parsed."),
    "repo-requirement-include-missing": RuleText(
        "Included requirements file is missing",
        "requirements.txt includes another file that is not in the repository."),
    SCAN_INCOMPLETE: RuleText(
        "Input not fully scanned",
        "Part of the input could not be read (a broken stream, a limit, an encrypted member, an "
        "unknown format, a missing target). It is inconclusive, never clean: review it by hand."),
}

_PREFIXES = (
    ("pickle-", "Pickle program behaviour: {}",
     "What the program a pickle would run does when loaded: {}."),
    ("python-", "Python code behaviour: {}",
     "What Python source (a script, remote code, a notebook, a code string) would do: {}."),
    ("torchscript-", "TorchScript code behaviour: {}",
     "What the TorchScript code of an archive would do: {}."),
    ("pattern-", "Pattern match: {}",
     "Informational: the YARA-X pattern rule {} matched; pattern matches never decide a verdict alone."),
    ("template-", "Chat template: {}",
     "A Jinja2 chat template (GGUF metadata or tokenizer_config.json), parsed and never rendered: {}."),
    ("keras-", "Keras model: {}", "A Keras model carries code: {}."),
    ("onnx-", "ONNX model: {}", "An ONNX graph: {}."),
    ("tf-", "TensorFlow graph: {}", "A TensorFlow graph: {}."),
    ("tflite-", "TensorFlow Lite model: {}", "A TensorFlow Lite model: {}."),
    ("zip-", "Zip structure: {}", "A zip container built to hide or confuse: {}."),
    ("repo-", "Repository layout: {}", "The layout and configuration of the repository: {}."),
)


def rule_text(rule: str) -> RuleText:
    known = _RULES.get(rule)
    if known is not None:
        return known
    for prefix, short, full in _PREFIXES:
        if rule.startswith(prefix):
            words = rule[len(prefix):].replace("-", " ")
            return RuleText(short.format(words), full.format(words))
    words = rule.replace("-", " ")
    return RuleText(words.capitalize(), f"malhug rule {rule}.")
