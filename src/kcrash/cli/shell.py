"""
kcrash.cli.shell
================

``kcrash shell DUMP [-c CODE]``: Python with ``prog`` (the dump as drgn's ``Program``,
:mod:`kcrash.analysis.drgn_compat`) and drgn's helpers (:mod:`kcrash.analysis.drgn_helpers`) in
the namespace, as ``drgn -c`` sets it up, so a drgn script that uses only those runs unchanged.
Its ``import drgn`` / ``from drgn.helpers.linux.pid import find_task`` lines get kcrash's modules:
while the shell runs, ``sys.modules`` holds kcrash's ``drgn``, ``drgn.helpers`` and
``drgn.helpers.linux.*`` (a real drgn imported before is put back afterwards), and a finder
answers any other ``drgn.*`` name with an ImportError that says kcrash does not have it. The
interactive prompt completes with Tab: names, ``prog["<kallsyms name>"]`` and members of objects
(from their types: no memory is read to complete).
"""

from __future__ import annotations

import bisect
import contextlib
import importlib.abc
import importlib.machinery
import re
import rlcompleter
import sys
import types
from collections.abc import Iterator, Sequence
from typing import Any

import click

from kcrash.analysis.drgn_compat import DrgnProgram, drgn_program
from kcrash.analysis.drgn_helpers import drgn_modules, shell_names
from kcrash.cli.common import opened_target, run_user_code, symbol_file_options
from kcrash.cli.params import DumpOrLive
from kcrash.types.program import Program

__all__ = ["ShellCompleter", "drgn_imports", "shell_command", "shell_namespace"]

#: readline's word delimiters less the brackets, quotes and dots of ``prog["name"].member``
_DELIMS = " \t\n`~!@#$%^&*()-=+{}\\|;:,<>/?"
_SUBSCRIPT = re.compile(r"""^(.*\[\s*)(["'])([\w.$]*)$""")


def shell_namespace(prog: Program) -> dict[str, Any]:
    """``prog`` (now a :class:`~kcrash.analysis.drgn_compat.DrgnProgram`), drgn's names and helpers."""
    return shell_names(drgn_program(prog))


class _MissingDrgn(importlib.abc.MetaPathFinder):
    # Any drgn.* module kcrash does not provide: a clear ImportError instead of the real drgn's.
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        # (``from drgn.helpers.linux.fs import x`` of a name kcrash lacks comes here as the module
        # drgn.helpers.linux.fs.x)
        if fullname == "drgn" or fullname.startswith("drgn."):
            raise ImportError(f"kcrash shell has no {fullname} (kcrash's drgn compatibility provides: "
                              "drgn, drgn.helpers.linux.{pid,sched,printk,slab,list,rbtree,xarray,percpu,"
                              "cpumask,fs,net,mm,mapletree,wait,swait,kconfig,module})", name=fullname)
        return None


@contextlib.contextmanager
def drgn_imports(prog: DrgnProgram) -> Iterator[None]:
    """While inside: ``import drgn...`` gets kcrash's drgn-compatible modules for ``prog``."""
    saved = {name: mod for name, mod in sys.modules.items() if name == "drgn" or name.startswith("drgn.")}
    for name in saved:
        del sys.modules[name]
    sys.modules.update(drgn_modules(prog))
    finder = _MissingDrgn()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "drgn" or n.startswith("drgn.")]:
            del sys.modules[name]
        sys.modules.update(saved)


class ShellCompleter(rlcompleter.Completer):
    """Tab completion: Python names, ``prog["sym`` from kallsyms (the names are listed once, at
    the first such completion) and ``expr.member`` from ``dir(expr)`` (an Object lists its type's
    members; expressions with calls are not evaluated)."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        super().__init__(namespace)
        self._namespace = namespace
        self._names: list[str] | None = None

    def symbol_names(self) -> list[str]:
        """Every kallsyms name, sorted."""
        if self._names is None:
            prog = self._namespace.get("prog")
            table = prog.symbol_table if isinstance(prog, Program) else None
            found = {s.name for s in table.iter_symbols()} if table is not None else set()
            self._names = sorted(found)
        return self._names

    def global_matches(self, text: str) -> list[str]:
        """Names, or kallsyms names inside ``prog["``."""
        subscript = _SUBSCRIPT.match(text)
        if subscript is None:
            return list(super().global_matches(text))
        head, quote, prefix = subscript.groups()
        names = self.symbol_names()
        start = bisect.bisect_left(names, prefix)
        out = []
        for name in names[start:start + 1000]:
            if not name.startswith(prefix):
                break
            out.append(f"{head}{quote}{name}{quote}]")
        return out

    def attr_matches(self, text: str) -> list[str]:
        """``expr.prefix`` completed from ``dir(expr)``; nothing when ``expr`` has a call in it."""
        expr, _, prefix = text.rpartition(".")
        if "(" in expr or not expr:
            return []
        try:
            thing = eval(expr, self._namespace)  # the user's own expression, as rlcompleter does
        except Exception:
            return []
        try:
            names = dir(thing)
        except Exception:
            return []
        hide = not prefix.startswith("_")
        return [f"{expr}.{name}" for name in names if name.startswith(prefix) and not (hide and name.startswith("_"))]

    def complete(self, text: str, state: int) -> str | None:
        """readline's completer: the state-th match of ``text``."""
        if state == 0:
            self.matches = self.attr_matches(text) if "." in text and not _SUBSCRIPT.match(text) \
                else self.global_matches(text)
        try:
            result: str = self.matches[state]
        except IndexError:
            return None
        return result


def _interact(path: str, namespace: dict[str, Any]) -> None:
    # lazy: +1 ms CPU to import it after this module (measured, loaded host)
    import code  # the REPL modules only for the interactive shell

    try:
        # lazy: importing readline changes input() for the process; only the interactive shell wants that
        import readline
    except ImportError:  # no readline: no completion
        pass
    else:
        readline.set_completer(ShellCompleter(namespace).complete)
        readline.set_completer_delims(_DELIMS)
        readline.parse_and_bind("tab: complete")
    banner = (f"kcrash shell: {path}\n`prog` is the dump as drgn's Program (prog.stack_trace(pid), "
              "prog.crashed_thread(), prog.symbol(...)); drgn's helpers are loaded (find_task, for_each_task, "
              "get_dmesg, slab_object_info, per_cpu, list_for_each_entry ...) and `from drgn.helpers.linux... "
              "import ...` works; Tab completes names, prog[\"symbols\"] and members")
    code.interact(banner=banner, local=namespace, exitmsg="")


@click.command("shell")
@click.argument("path", metavar="DUMP", type=DumpOrLive())
@symbol_file_options
@click.option("-c", "command", help="Run this Python code instead of the interactive prompt.")
def shell_command(path: str, command: str | None) -> None:
    """Python with `prog` (the dump, drgn's API) and drgn's helpers, as `drgn -c`."""
    with opened_target(path) as opened:
        namespace = shell_namespace(opened)
        with drgn_imports(namespace["prog"]):
            if command is not None:
                run_user_code(command, namespace, "<kcrash shell -c>")
            else:
                _interact(path, namespace)


commands: list[click.Command] = [shell_command]
