"""
kcrash.cli.oops
===============

``kcrash oops``: placeholder group, filled in by its issue.
"""

from __future__ import annotations

import click

__all__ = ["oops"]


@click.group()
def oops() -> None:
    """Commands on console oops logs."""
