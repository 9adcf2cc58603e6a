"""Abstract values of the code engine: what is known of a value without running anything."""
from __future__ import annotations

from dataclasses import dataclass, field, replace


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


@dataclass(frozen=True)
class Taint:
    """Where data came from: a kind (network, secret, env, sysinfo, listing, decoded, file, socket)
    and a short description of the origin for messages (`~/.ssh/id_rsa`, `platform.uname`)."""

    kind: str
    origin: str


@dataclass(frozen=True)
class AValue:
    """One abstract value.

    const:    the Python constant it certainly holds (MISSING when not known)
    name:     the dotted name of the module, class or function it is (`os.system`)
    instance: the dotted name of the class or factory it was made by (`socket.socket`)
    taint:    where its data came from
    func:     a function defined in the analysed code (a FunctionValue)
    hidden:   its name or content was reached through obfuscation (decoding, getattr ...)
    items:    for sequences whose elements are not all constant
    receiver: for a method reached on an object, that object
    path:     for paths, open files and directory listings, the path as far as it is known
    """

    const: object = MISSING
    name: str | None = None
    instance: str | None = None
    taint: frozenset = field(default=frozenset())
    func: object = None
    hidden: bool = False
    items: tuple | None = None
    receiver: object = None  # for a method of an object: the object (an AValue)
    path: str | None = None  # the file or files it names or holds open (`~/.ssh/*`), when known

    @property
    def known(self) -> bool:
        return self.const is not MISSING

    def with_taint(self, *extra) -> "AValue":
        merged = self.taint.union(*extra)
        return self if merged == self.taint else replace(self, taint=merged)

    def kinds(self) -> set[str]:
        return {t.kind for t in self.taint}


UNKNOWN = AValue()


def const(value, hidden: bool = False, taint: frozenset = frozenset()) -> AValue:
    return AValue(const=value, hidden=hidden, taint=taint)


def ref(name: str, hidden: bool = False) -> AValue:
    return AValue(name=name, hidden=hidden)


def union_taint(values) -> frozenset:
    out: set = set()
    for value in values:
        if isinstance(value, AValue):
            out |= value.taint
            if value.items:
                for item in value.items:
                    if isinstance(item, AValue):
                        out |= item.taint
    return frozenset(out)


def join(values) -> AValue:
    """What is known of a value that may be any of these (branches, loop iterations)."""
    values = [v for v in values if isinstance(v, AValue)]
    if not values:
        return UNKNOWN
    first = values[0]
    same = all(v.const == first.const and v.name == first.name and v.instance == first.instance
               for v in values[1:] if v.known or first.known or v.name or first.name)
    taint = union_taint(values)
    hidden = any(v.hidden for v in values)
    if same:
        return replace(first, taint=taint, hidden=hidden)
    return AValue(taint=taint, hidden=hidden)
