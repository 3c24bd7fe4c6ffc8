"""The one registry type of secateurs: entries added by decorator, looked up by name or through a class's MRO.

Every extension point (coupling rules, literal finders, surgery handlers, importance criteria, layer criteria,
depth adapters, compensation methods, 2:4 methods, calibration layouts, feature maps, Hugging Face families,
model specs) is a :class:`Registry`. Registering a different entry under a taken key raises
:class:`~secateurs.errors.DuplicateRegistrationError`; asking for an unknown name raises
:class:`~secateurs.errors.UnknownNameError` listing the known ones. Built-in entries live in modules that are
imported by name on first use (``modules=`` / ``package=``), so creating a registry does no work and lower
layers never import the packages that fill them. ``tests/test_registries.py`` is generated from
:meth:`Registry.instances`: a registry without a contract test there fails the suite.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from secateurs.errors import DuplicateRegistrationError, UnknownNameError

V = TypeVar("V")
Key = str | type


def key_name(key: Key) -> str:
    """A key as text: names as they are, classes as ``module.QualName``."""
    return key if isinstance(key, str) else f"{key.__module__}.{key.__qualname__}"


class Registry(Generic[V]):
    """``what`` names an entry in messages ("importance criterion"). ``modules`` are imported before the first
    lookup; ``package`` imports each of its submodules not starting with ``_`` (minus ``skip``)."""

    _all: ClassVar[list[Registry[Any]]] = []

    def __init__(self, what: str, *, modules: Sequence[str] = (), package: str | None = None,
                 skip: Sequence[str] = ()) -> None:
        self.what = what
        self._modules = tuple(modules)
        self._package = package
        self._skip = frozenset(skip)
        self._entries: dict[Key, V] = {}
        self._loaded = not modules and package is None
        Registry._all.append(self)

    # -- filling --------------------------------------------------------------------------------------------
    def register(self, *keys: Key) -> Callable[[V], V]:
        """Decorator: ``@REG.register("name")`` or ``@REG.register(SomeModule, "pkg.mod.OtherModule")``."""
        if not keys:
            raise TypeError(f"{self.what}: register() needs at least one key")

        def deco(value: V) -> V:
            for key in keys:
                self.add(key, value)
            return value

        return deco

    def add(self, key: Key, value: V) -> None:
        if not isinstance(key, (str, type)):
            raise TypeError(f"{self.what} keys are names or classes, got {key!r}")
        old = self._entries.get(key)
        if old is not None and old is not value:
            raise DuplicateRegistrationError(
                f"{self.what} {key_name(key)!r} is registered twice ({_describe(old)} and {_describe(value)}); "
                "pick another name, or remove the older entry")
        self._entries[key] = value

    @contextlib.contextmanager
    def replaced(self, key: Key, value: V) -> Iterator[None]:
        """Within the block, ``key`` maps to ``value`` (tests, experiments); the previous entry comes back after."""
        self._load()
        had, old = key in self._entries, self._entries.get(key)
        self._entries[key] = value
        try:
            yield
        finally:
            if had:
                self._entries[key] = old  # type: ignore[assignment]
            else:
                del self._entries[key]

    # -- lookup ---------------------------------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # set first: the modules imported below register into this registry
        for name in self._modules:
            importlib.import_module(name)
        if self._package is not None:
            pkg = importlib.import_module(self._package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_") and info.name not in self._skip:
                    importlib.import_module(f"{self._package}.{info.name}")

    def find(self, key: Key) -> V | None:
        """The entry of exactly ``key``, or None."""
        self._load()
        return self._entries.get(key)

    def get(self, key: Key) -> V:
        """The entry of ``key``; an UnknownNameError naming the known keys otherwise."""
        value = self.find(key)
        if value is None:
            known = ", ".join(repr(n) for n in self.names())
            raise UnknownNameError(f"unknown {self.what} {key_name(key) if isinstance(key, type) else key!r}; "
                                   f"use one of {known}")
        return value

    def for_type(self, cls: type) -> V | None:
        """The entry of the nearest class in ``cls``'s MRO, registered as the class or as its qualified name
        (``"transformers.pytorch_utils.Conv1D"``, for classes of optional packages never imported here)."""
        self._load()
        for base in cls.__mro__:
            value = self._entries.get(base)
            if value is None:
                value = self._entries.get(key_name(base))
            if value is not None:
                return value
        return None

    # -- listing --------------------------------------------------------------------------------------------
    def entries(self) -> dict[Key, V]:
        """Every entry, built-in modules loaded first (a copy)."""
        self._load()
        return dict(self._entries)

    def names(self) -> list[str]:
        return sorted(key_name(k) for k in self.entries())

    def __contains__(self, key: object) -> bool:
        self._load()
        return key in self._entries

    def __iter__(self) -> Iterator[Key]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self.entries())

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {len(self._entries)} entries)"

    def digest(self) -> str:
        """Text that changes whenever an entry is added, removed or replaced (caches of derived results key on it)."""
        return f"{self.what}:" + ",".join(f"{key_name(k)}={id(v)}" for k, v in sorted(
            self.entries().items(), key=lambda kv: key_name(kv[0])))

    @classmethod
    def instances(cls) -> list[Registry[Any]]:
        """Every registry created so far (import the modules that define them first)."""
        return list(cls._all)


def _describe(value: Any) -> str:
    name = getattr(value, "__qualname__", None) or type(value).__qualname__
    module = getattr(value, "__module__", "")
    return f"{module}.{name}" if module else str(name)
