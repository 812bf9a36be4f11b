"""Reading kcrash's ``--json`` output back in tests that compare values, not the encoding.

kcrash writes addresses and other 64-bit values as ``"0x…"`` strings (README, "JSON output";
:func:`kcrash.report.json.json_ready`). Oracle tests compare those values with drgn's integers:
:func:`from_hex` turns every such string back into an int. The encoding itself is checked by
``tests/oracle/test_json_outputs_lab.py`` and the schema tests.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["from_hex"]

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
