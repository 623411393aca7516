"""One way to build a plug-in registry (repair methods, generation backends, drift detectors).

A name maps to an entry (a method spec, a factory ...). Built-in entries may live in modules that register them
when imported; `get` imports such a module on first use, `names` imports all of them. An unknown name is one
`BadInputError` line naming the closest known one. A built-in module that fails to import raises: nothing is
swallowed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from realignkit.common.errors import BadInputError, closest_match

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one plug-in `kind` ("method", "backend", ...) by name."""

    def __init__(self, kind: str, *, modules: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._modules = dict(modules or {})  # name -> the module that registers it when imported

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`."""

        def decorate(entry: T) -> T:
            self.add(name, entry)
            return entry

        return decorate

    def get(self, name: str) -> T:
        if name not in self._entries and name in self._modules:
            importlib.import_module(self._modules[name])
        if name not in self._entries:
            known = self.names()
            raise BadInputError(f"unknown {self.kind} {name!r}{closest_match(name, known)}; known: {', '.join(known)}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Every name, built-in modules imported first (sorted)."""
        for module in dict.fromkeys(self._modules.values()):
            importlib.import_module(module)
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
