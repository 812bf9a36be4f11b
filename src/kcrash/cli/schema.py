"""
kcrash.cli.schema
=================

``kcrash schema [NAME]``: the JSON Schema (draft 2020-12, versioned) of a command's ``--json``
output; without NAME, the names. The schemas ship in ``kcrash/report/schemas/`` (the report's is
``kcrash report --schema``).
"""

from __future__ import annotations

import click

from kcrash.cli.common import echo_schema
from kcrash.errors import CliError
from kcrash.report.json import output_schema, output_schema_names

__all__ = ["schema"]


@click.command("schema")
@click.argument("name", required=False)
def schema(name: str | None) -> None:
    """The JSON Schema of NAME's --json output (NAME: a command such as bt, or GROUP-COMMAND such as
    dump-info); without NAME, list the names."""
    names = output_schema_names()
    if name is None:
        click.echo("\n".join(names))
        return
    if name not in names:
        raise CliError(f"no JSON schema named {name!r} (one of: {', '.join(names)})")
    echo_schema(output_schema(name))
