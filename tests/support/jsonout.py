"""Reading kcrash's ``--json`` output back in tests that compare values, not the encoding.

kcrash writes addresses and other 64-bit values as ``"0x…"`` strings (README, "JSON output";
:func:`kcrash.report.json.json_ready`). Oracle tests compare those values with drgn's integers:
:func:`from_hex` turns every such string back into an int. The encoding itself is checked by
``tests/oracle/test_json_outputs_lab.py`` and the schema tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import jsonschema

from kcrash.report.json import JSON_SAFE_INTEGER, is_hex_field, output_schema

__all__ = ["assert_json_output", "from_hex"]

_HEX = re.compile(r"-?0x[0-9a-f]+")


def from_hex(data: Any) -> Any:
    """``data`` with every ``"0x…"`` string (as kcrash's JSON writes numbers) as an int."""
    if isinstance(data, dict):
        return {k: from_hex(v) for k, v in data.items()}
    if isinstance(data, list):
        return [from_hex(v) for v in data]
    if isinstance(data, str) and _HEX.fullmatch(data):
        return int(data, 16)
    return data


def assert_json_output(name: str, data: Any) -> None:
    """``data`` (one parsed ``--json`` output, or one record of ``kcrash live --json``) validates
    against the shipped schema ``name`` and follows the number rule: no integer reaches 2^53 and
    no address field holds an integer (they are ``"0x…"`` strings)."""
    errors = list(jsonschema.Draft202012Validator(output_schema(name)).iter_errors(data))
    assert not errors, (name, errors[0].message, list(errors[0].absolute_path), data)
    bad = list(_integer_problems(data, None, None, name))
    assert not bad, bad[:10]


def _integer_problems(value: Any, key: str | None, parent: str | None, where: str) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _integer_problems(v, k, key, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _integer_problems(v, key, parent, f"{where}[{i}]")
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= JSON_SAFE_INTEGER:
            yield f"{where}: {value} reaches 2^53"
        if key is not None and is_hex_field(key, parent):
            yield f"{where}: {value} is an integer in an address field"
