"""The public helpers of :mod:`kcrash.helpers` whose docstrings the tests check (issue 22, item 11):
every function or class named in a helper module's ``__all__`` and defined in ``kcrash.helpers``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from types import ModuleType

import kcrash.helpers


def helper_modules() -> Iterator[ModuleType]:
    """Every module of the :mod:`kcrash.helpers` package, imported."""
    for info in pkgutil.walk_packages(kcrash.helpers.__path__, "kcrash.helpers."):
        yield importlib.import_module(info.name)


def public_helpers() -> list[tuple[ModuleType, str, object]]:
    """``(module, name, function or class)`` of every public helper."""
    found: list[tuple[ModuleType, str, object]] = []
    for module in helper_modules():
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and \
                    getattr(obj, "__module__", "").startswith("kcrash.helpers"):
                found.append((module, name, obj))
    return found


def program_members() -> list[tuple[str, object]]:
    """``(name, function or property)`` of every public method and property of
    :class:`~kcrash.types.program.Program`, documented as the helpers are."""
    from kcrash.types.program import Program

    return [(name, value) for name, value in vars(Program).items()
            if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property))]
