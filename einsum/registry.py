"""Named registries for variants, strategies and presets: an unknown name lists the known."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .errors import SpecError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered item with its name, aliases, one-line summary and metadata."""

    name: str
    item: T
    summary: str = ""
    aliases: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict, compare=False, hash=False)


class Registry(Generic[T]):
    """A name -> item table; tests and the dashboard iterate it, so a new entry is covered.

    Example:
        >>> STRATEGIES = Registry("strategy")
        >>> @STRATEGIES.register("greedy", summary="one pass")
        ... def greedy(): ...
        >>> STRATEGIES["greedy"] is greedy
        True
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(
        self, name: str, *, summary: str = "", aliases: tuple[str, ...] = (), **meta
    ) -> Callable[[T], T]:
        def add(item: T) -> T:
            for key in (name, *aliases):
                if key in self._entries or key in self._aliases:
                    raise SpecError(f"{self.kind} {key!r} is registered twice")
            doc_lines = (getattr(item, "__doc__", None) or "").strip().splitlines()
            text = summary or (doc_lines[0] if doc_lines else "")
            self._entries[name] = Entry(name, item, text, tuple(aliases), dict(meta))
            self._aliases.update(dict.fromkeys(aliases, name))
            return item

        return add

    def canonical(self, name: str) -> str:
        """The registered name behind a name or an alias."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        known = ", ".join(sorted([*self._entries, *self._aliases]))
        raise SpecError(f"unknown {self.kind} {name!r}; known: {known}")

    def entry(self, name: str) -> Entry[T]:
        return self._entries[self.canonical(name)]

    def __getitem__(self, name: str) -> T:
        return self.entry(name).item

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())
