"""
kcrash.analysis.target
======================

:func:`open_target`: a dump as a ready :class:`~kcrash.types.program.Program` with nothing but the
dump: kernel symbols from the in-memory kallsyms (cached by build-id), vmlinux BTF from memory,
then every loaded module's symbols and split BTF (:func:`~kcrash.helpers.linux.module.load_module_debuginfo`)
and, unless asked not to, the ORC tables of vmlinux and the modules
(:func:`~kcrash.helpers.linux.stack.kernel_unwinder`). What could not be loaded for a module is
kept (:func:`module_debuginfo`) rather than raised, so one broken module does not stop an analysis.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from kcrash.errors import KcrashError
from kcrash.helpers.linux.module import ModuleDebugInfo, for_each_module, load_module_debuginfo
from kcrash.helpers.linux.stack import kernel_unwinder
from kcrash.types.program import Program, open_program

__all__ = ["DumpPaths", "load_modules", "module_debuginfo", "open_target"]

DumpPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
_LOADED = "kcrash.analysis.target.load_modules"  # prog.cache key


def open_target(dump_paths: DumpPaths, cache_dir: Path | None = None, *, orc: bool = True,
                symbol_file: Path | None = None, force: bool = False) -> Program:
    """Open dump files as a :class:`Program` with module symbols, module BTF and (``orc``) the ORC
    tables loaded. The caller closes it (``with open_target(...) as prog``).

    :param dump_paths: one dump file, or the parts of a split dump
    :param cache_dir: the kcrash cache directory (decoded kallsyms are kept there by build-id)
    :param symbol_file: a System.map or vmlinux for the kernel's symbols (see :func:`open_program`)
    """
    prog = open_program(dump_paths, cache_dir, symbol_file=symbol_file, force=force)
    try:
        load_modules(prog)
        if orc:
            kernel_unwinder(prog)
    except BaseException:
        prog.close()
        raise
    return prog


def load_modules(prog: Program) -> tuple[ModuleDebugInfo, ...]:
    """Load every module's symbols and BTF into ``prog`` (once); return what was found."""
    found: tuple[tuple[ModuleDebugInfo, ...], str | None] | None = prog.cache.get(_LOADED)
    if found is None:
        try:
            walk = for_each_module(prog)
            loaded = tuple(load_module_debuginfo(prog, mod) for mod in walk)
            truncated = walk.truncated
        except KcrashError as exc:  # the module list head itself is unknown or unreadable (a damaged dump)
            loaded, truncated = (), str(exc)
        found = prog.cache[_LOADED] = (loaded, truncated)
    return found[0]


def module_debuginfo(prog: Program) -> tuple[tuple[ModuleDebugInfo, ...], str | None]:
    """What :func:`load_modules` found, and why the module walk stopped early (None: it did not)."""
    load_modules(prog)
    found: tuple[tuple[ModuleDebugInfo, ...], str | None] = prog.cache[_LOADED]
    return found
