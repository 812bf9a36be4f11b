"""The lazy command table matches the commands the modules define."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click

from kcrash.cli.app import COMMANDS, load_command


def test_every_table_entry_loads_the_command_of_that_name() -> None:
    for name in COMMANDS:
        command = load_command(name)
        assert isinstance(command, click.Command) and command.name == name


def test_every_command_a_module_defines_is_in_the_table() -> None:
    for module_name in set(COMMANDS.values()):
        module = importlib.import_module(module_name)
        defined = {c.name for c in getattr(module, "commands", [])}
        defined |= {n for n in COMMANDS if COMMANDS[n] == module_name}
        for name in defined:
            assert COMMANDS.get(name) == module_name, name


def test_version_does_not_import_the_subcommands() -> None:
    code = "import sys; from kcrash.cli import main; main(['--version']); print(sorted(m for m in sys.modules " \
           "if m.startswith('kcrash.cli.') and m not in ('kcrash.cli.app', 'kcrash.cli.common')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_only_the_program_itself_freezes_the_garbage_collector() -> None:
    # main() without argv is the kcrash program, which exits next: it freezes what is left so that the
    # collections at interpreter exit skip it. main(argv) is a caller's (a test's) and must not.
    code = "import gc, sys; from kcrash.cli import main; before = gc.get_freeze_count(); main(['--version']); " \
           "after_argv = gc.get_freeze_count(); t = gc.get_threshold(); sys.argv = ['kcrash', '--version']; main(); " \
           "print(before == after_argv == 0, gc.get_freeze_count() > 0, t == (700, 10, 10), gc.get_threshold()[0])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "True True True 20000"
