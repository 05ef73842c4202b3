"""Name registries for strategies, regularizers and backbones (timm-style, but duplicates raise)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from robustlabels.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """A map from snake_case names to objects, filled by the :meth:`register` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding an entry under ``name``; a second entry with the same name raises."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """Return the entry for ``name``, or raise :class:`InputError` listing the known names."""
        try:
            return self._entries[name]
        except KeyError:
            raise InputError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}"
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a shell-style wildcard."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
