"""One registry shape for every pluggable part: ``register`` / ``create`` / ``list``.

Backbones, datasets, heads, losses, augmentations and method presets are each a
:class:`Registry`. A module adds its entries where they are defined (a decorator or a call);
the user picks one by name (``--backbone``, ``--dataset``, ``--head``, ...), and an unknown name
is a one-line SarbError that lists the choices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sarb.errors import SarbError, quote

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered name: how to build it, and what to show about it (reference, summary...)."""

    name: str
    build: Callable[..., T]
    info: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Named builders of one kind of part; ``flag`` names the option in error messages."""

    def __init__(self, kind: str, flag: str):
        self.kind, self.flag = kind, flag
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, **info: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@REGISTRY.register("name", summary="...")`` on a class or a function."""

        def wrap(build: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = Entry(name, build, info)
            return build

        return wrap

    def get(self, name: str) -> Entry[T]:
        """The entry of ``name``; SarbError listing the choices when there is none."""
        if name not in self._entries:
            raise SarbError(
                f"{self.flag} {quote(name)}: unknown {self.kind}; choose from {self.choices}"
            )
        return self._entries[name]

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        """Build ``name`` with the given arguments."""
        return self.get(name).build(*args, **kwargs)

    def list(self) -> list[Entry[T]]:
        """Every entry, in registration order."""
        return list(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    @property
    def choices(self) -> str:
        return ", ".join(self._entries)
