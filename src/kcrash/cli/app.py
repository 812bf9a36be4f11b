"""
kcrash.cli.app
==============

The root command group. Subcommands are imported only when they run (a dump command should not
pay for importing the live debugger or the DWARF reader): :data:`COMMANDS` maps each command name
to the module that defines it, and a test checks the table against the modules.
"""

from __future__ import annotations

import importlib

import click

from kcrash import __version__

__all__ = ["COMMANDS", "kcrash"]

#: command name -> module whose ``commands`` list (or attribute of the same name) defines it
COMMANDS: dict[str, str] = {
    "addr2line": "kcrash.cli.addr2line",
    "bt": "kcrash.cli.analyze",
    "collect": "kcrash.cli.collect",
    "decode": "kcrash.cli.decode",
    "dis": "kcrash.cli.dis",
    "dump": "kcrash.cli.dump",
    "lab": "kcrash.cli.lab",
    "live": "kcrash.cli.live",
    "log": "kcrash.cli.analyze",
    "mod": "kcrash.cli.analyze",
    "oops": "kcrash.cli.oops",
    "p": "kcrash.cli.types",
    "ps": "kcrash.cli.analyze",
    "rd": "kcrash.cli.memory",
    "report": "kcrash.cli.analyze",
    "shell": "kcrash.cli.analyze",
    "struct": "kcrash.cli.types",
    "sym": "kcrash.cli.sym",
    "sys": "kcrash.cli.analyze",
    "vtop": "kcrash.cli.memory",
}


def load_command(name: str) -> click.Command:
    """Import the module of command ``name`` and return the command object."""
    module = importlib.import_module(COMMANDS[name])
    for command in getattr(module, "commands", []):
        if command.name == name:
            return command  # type: ignore[no-any-return]
    command = getattr(module, name)
    assert isinstance(command, click.Command)
    return command


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in COMMANDS else None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kcrash")
def kcrash() -> None:
    """Linux kernel crash analysis and live kernel debugging."""
