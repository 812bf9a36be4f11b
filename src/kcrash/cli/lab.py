"""
kcrash.cli.lab
==============

``kcrash lab``: the crash lab (placeholder while the lab is built).
"""

from __future__ import annotations

import click

__all__ = ["lab"]


@click.group()
def lab() -> None:
    """Boot real Debian kernels under QEMU and crash them on purpose."""
