"""
kcrash.cli.dump
===============

``kcrash dump``: placeholder group, filled in by its issue.
"""

from __future__ import annotations

import click

__all__ = ["dump"]


@click.group()
def dump() -> None:
    """Commands on crash dump files."""
