"""
kcrash.cli.app
==============

The root command group; subcommand groups register here.
"""

from __future__ import annotations

import click

from kcrash import __version__
from kcrash.cli import addr2line, analyze, collect, decode, dis, live, sym, types
from kcrash.cli.dump import dump
from kcrash.cli.lab import lab
from kcrash.cli.memory import rd, vtop
from kcrash.cli.oops import oops

__all__ = ["kcrash"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kcrash")
def kcrash() -> None:
    """Linux kernel crash analysis and live kernel debugging."""


kcrash.add_command(dump)
kcrash.add_command(lab)
kcrash.add_command(oops)
kcrash.add_command(rd)
kcrash.add_command(vtop)

# Each of these modules lists its commands in ``commands``; registering them in a loop keeps this file
# stable while subcommands are added.
for _module in (analyze, sym, types, collect, addr2line, decode, dis, live):
    for _command in _module.commands:
        kcrash.add_command(_command)
