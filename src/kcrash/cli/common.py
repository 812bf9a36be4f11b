"""
kcrash.cli.common
=================

Small things every subcommand shares: the cache directory (``$KCRASH_CACHE``, default
``~/.cache/kcrash``) and JSON output.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

__all__ = ["cache_dir", "echo_json"]


def cache_dir() -> Path:
    """The kcrash cache: ``$KCRASH_CACHE`` or ``~/.cache/kcrash``."""
    env = os.environ.get("KCRASH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kcrash"


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    import json  # only --json output needs it

    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
