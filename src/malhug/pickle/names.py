"""How an unpickler turns (module, name) into the object it imports, written as a dotted path.

CPython maps Python 2 names (`__builtin__`, `copy_reg` ...) for old protocols and resolves
dotted names attribute by attribute for protocol 4 and later. A pickle can pick its own
protocol, so both rules are always applied: the most permissive reading is the one to judge.
"""
from __future__ import annotations

import _compat_pickle  # the standard library's own name tables: data, nothing is imported

_NAME_MAPPING = _compat_pickle.NAME_MAPPING
_IMPORT_MAPPING = _compat_pickle.IMPORT_MAPPING


def canonical_name(module: str, name: str) -> str:
    module, name = canonical_pair(module, name)
    return f"{module}.{name}" if name else module


def canonical_pair(module: str, name: str) -> tuple[str, str]:
    if (module, name) in _NAME_MAPPING:
        return _NAME_MAPPING[(module, name)]
    return _IMPORT_MAPPING.get(module, module), name


MAX_TAIL_PARTS = 16  # the longest attribute-chain tail tried against the knowledge base


def candidates(module: str, name: str) -> list[str]:
    """The dotted names a global may really be: itself, and each tail of its attribute chain.

    `pathlib` + `os.system` is `os.system` reached through a module that imported `os`. The
    module part is imported as a module, so only the attribute chain can hide another name.
    """
    module, name = canonical_pair(module, name)
    names = [f"{module}.{name}" if name else module]
    parts = name.split(".")
    # A chain that reaches a callable through modules ends with that callable's own dotted name
    # (`pathlib.os.path.os.system` ends with `os.system`), so only the shorter tails are tried:
    # a crafted name of thousands of parts would otherwise cost quadratic time per lookup.
    first = max(0, len(parts) - MAX_TAIL_PARTS)
    names.extend(".".join(parts[i:]) for i in range(first, len(parts) - 1))
    return names
