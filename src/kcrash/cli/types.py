"""
kcrash.cli.types
================

Commands of this module are registered through :data:`commands` (filled in by its issue).
"""

from __future__ import annotations

import click

__all__ = ["commands"]

commands: list[click.Command] = []
