"""
kcrash.report.json
==================

The JSON rendering of a :class:`~kcrash.model.CrashReport` and its published JSON Schema
(draft 2020-12, shipped as ``kcrash/report/schema.json`` and printed by ``kcrash report --schema``).
The schema is derived from the model's dataclasses (:func:`schema_from_model`; a test keeps the
shipped file equal to it): every field is required, no others are allowed, ``X | None`` becomes a
nullable type and ``tuple[X, ...]`` an array. Renderers take the model only.

It also holds the one rule for numbers in every ``--json`` output of kcrash (:func:`json_ready`,
documented in the README's "JSON output" section): JavaScript's ``JSON.parse`` turns integers above
2^53 into doubles, so addresses and other 64-bit values are written as ``"0x…"`` strings, decided
per field name (:data:`HEX_FIELDS`); counts, pids, CPU numbers, line numbers and sizes in bytes stay
integers. C values (``p``, ``struct``, ``task -R``, ``list -s``, ``tree -s``) follow the C type instead
(:func:`kcrash.types.format.object_to_json`): pointers and integers wider than 32 bits are strings,
the others (:class:`~kcrash.types.format.CInt`) integers whatever the member is called.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from importlib import resources

from kcrash import model
from kcrash.types.format import CInt

__all__ = [
    "HEX_FIELDS",
    "HEX_PATTERN",
    "JSON_SAFE_INTEGER",
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "dumps",
    "is_hex_field",
    "json_ready",
    "output_schema",
    "output_schema_names",
    "render_json",
    "schema",
    "schema_from_model",
]

#: The report schema's version: 2 since addresses became "0x…" strings and log lines ``ts_nsec`` (CHANGELOG.md).
SCHEMA_VERSION = 2
SCHEMA_ID = f"https://kcrash.invalid/schema/crash-report-{SCHEMA_VERSION}.json"

#: The largest integer a JavaScript double holds exactly (``Number.MAX_SAFE_INTEGER`` + 1).
JSON_SAFE_INTEGER = 2**53
#: How a hex field looks: ``hex()`` of the value (a negative C value keeps its sign, ``"-0x1"``).
HEX_PATTERN = "^-?0x[0-9a-f]+$"

#: Fields whose integers are written as ``"0x…"`` strings wherever they appear (also as C member
#: names in ``p``/``task``/``struct`` values): addresses and pointers; physical addresses and page
#: table roots; offsets (symbol+offset, object offsets, ``vm_pgoff``); masks and flags; register
#: values; raw values read from memory; and 64-bit clocks (``ts_nsec`` passes 2^53 after 104 days
#: of uptime) and jiffies.
HEX_FIELDS = frozenset({
    # addresses and pointers
    "address", "addr", "base", "cache", "cdev", "dentry", "desc", "end", "entry", "fault", "file",
    "function", "handler", "idle", "inode", "ip", "lock", "mm", "mount", "net", "ops", "pc", "pgd",
    "slab", "sp", "start", "superblock", "target", "task", "thread_fn", "virtual", "waiter",
    # physical addresses, page tables and the kernel's placement
    "page_table_root", "phys_base", "physical", "root", "table", "kaslr_offset",
    # offsets
    "offset", "pgoff",
    # register values (also every integer inside the objects of _HEX_CHILDREN)
    "registers",
    # masks, flags and control registers
    "flags", "mask", "taint_mask", "cr0", "cr2", "cr3", "cr4", "kernel_gs_base",
    # raw values read from memory
    "value", "values", "last",
    # 64-bit clocks and jiffies
    "clk", "clock", "clock_task", "expires", "jiffies", "next_expiry", "ts_nsec", "uptime_ns",
})
# Any field named like an address (``global_address``, ``stack_addr``) is one too.
_HEX_SUFFIXES = ("_address", "_addr")
# Every integer directly inside these objects is a register value, or (``lab crash``'s
# ``planted.global_values``) a value the lab module planted in memory.
_HEX_CHILDREN = frozenset({"registers", "segment_bases", "segment_selectors", "global_values"})
# Every integer directly inside these objects is a count: ``dump convert``/``collect vmcore``'s
# ``excluded`` pages per class (its ``cache`` class is not a kmem cache address).
_COUNT_CHILDREN = frozenset({"excluded"})
# (parent, field) pairs that differ from the name's rule: a struct layout's member offsets are small
# byte counts; an xarray entry's index is any unsigned long.
_SCOPED: dict[tuple[str | None, str], bool] = {
    ("members", "offset"): False,
    ("members", "bit_offset"): False,
    ("entries", "index"): True,
}
_SCALARS: dict[object, dict[str, object]] = {
    int: {"type": "integer"},
    str: {"type": "string"},
    bool: {"type": "boolean"},
    float: {"type": "number"},
}


def render_json(report: model.CrashReport) -> str:
    """The report as indented JSON (keys sorted), numbers as :func:`json_ready` writes them."""
    return dumps(model.to_dict(report))


def is_hex_field(name: str, parent: str | None = None) -> bool:
    """Whether an integer in field ``name`` (inside an object that is the value of ``parent``) is
    written as a ``"0x…"`` string.

    :param name: the field's key
    :param parent: the key of the object (or of the list of objects) holding the field
    :return: True for the fields of :data:`HEX_FIELDS`, names ending in ``_address`` or ``_addr``,
        and the register objects; False inside the count objects (``excluded``)

    >>> is_hex_field("pc"), is_hex_field("pid"), is_hex_field("rip", "registers")
    (True, False, True)
    """
    scoped = _SCOPED.get((parent, name))
    if scoped is not None:
        return scoped
    if parent in _COUNT_CHILDREN:
        return False
    return name in HEX_FIELDS or name.endswith(_HEX_SUFFIXES) or parent in _HEX_CHILDREN


def json_ready(data: object) -> object:
    """``data`` (dicts, lists, scalars) with the integers of hex fields as ``"0x…"`` strings; any
    other integer beyond :data:`JSON_SAFE_INTEGER` too (a field this table misses is still read
    right by JavaScript; the schema tests catch the miss).

    :param data: JSON-able data as a command built it
    :return: the same shape, ready for :func:`json.dumps`

    >>> json_ready({"pid": 1, "task": 0xffff888004000000, "registers": {"rip": 16}})
    {'pid': 1, 'task': '0xffff888004000000', 'registers': {'rip': '0x10'}}
    """
    return _ready(data, None, None)


def _ready(value: object, key: str | None, parent: str | None) -> object:
    if isinstance(value, dict):
        return {k: _ready(v, k, key) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_ready(v, key, parent) for v in value]
    if isinstance(value, CInt):
        return int(value)  # a C value of 32 bits or less: its type decided (object_to_json)
    if isinstance(value, int) and not isinstance(value, bool):
        if key is not None and is_hex_field(key, parent):
            return hex(value)
        if abs(value) >= JSON_SAFE_INTEGER:
            return _unclassified(key, value)
    return value


def _unclassified(key: str | None, value: int) -> object:
    # A big integer in a field the table does not name: still a string (tests patch this to fail).
    return hex(value)


def dumps(data: object) -> str:
    """``data`` as indented JSON (keys sorted) after :func:`json_ready`, with a final newline; any
    other object becomes its ``str()``."""
    return json.dumps(json_ready(data), indent=2, sort_keys=True, default=str) + "\n"


def schema() -> dict[str, object]:
    """The shipped JSON Schema of :func:`render_json` output."""
    text = resources.files("kcrash.report").joinpath("schema.json").read_text(encoding="utf-8")
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


def output_schema_names() -> list[str]:
    """The names of the ``--json`` outputs with a shipped schema: a command (``bt``), or a group
    and its command (``dump-info``); ``report`` is :func:`schema`.

    :return: the names, sorted

    >>> "dump-info" in output_schema_names()
    True
    """
    folder = resources.files("kcrash.report").joinpath("schemas")
    names = [entry.name.removesuffix(".json") for entry in folder.iterdir() if entry.name.endswith(".json")]
    return sorted([*names, "report"])


def output_schema(name: str) -> dict[str, object]:
    """The JSON Schema (draft 2020-12, versioned by ``$id`` and ``schema_version``) of the ``--json``
    output ``name`` (see :func:`output_schema_names`).

    :param name: ``bt``, ``dump-info``, ``report`` …
    :return: the schema
    :raises KeyError: for a name without a schema

    >>> output_schema("log")["$id"]
    'https://kcrash.invalid/schema/log-1.json'
    """
    if name == "report":
        return schema()
    if name not in output_schema_names():
        raise KeyError(name)
    text = resources.files("kcrash.report").joinpath("schemas", f"{name}.json").read_text(encoding="utf-8")
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


def schema_from_model() -> dict[str, object]:
    """The JSON Schema derived from :class:`~kcrash.model.CrashReport` and its parts."""
    defs: dict[str, object] = {}
    root = _object_schema(model.CrashReport, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "title": "kcrash crash report",
        **root,
        "$defs": dict(sorted(defs.items())),
    }


def _object_schema(cls: type, defs: dict[str, object]) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    return {
        "type": "object",
        "description": " ".join((cls.__doc__ or "").split()),
        "properties": {name: _type_schema(hints[name], defs, name) for name in fields},
        "required": fields,
        "additionalProperties": False,
    }


def _type_schema(hint: object, defs: dict[str, object], key: str) -> dict[str, object]:
    if hint is int and is_hex_field(key):
        return {"type": "string", "pattern": HEX_PATTERN}
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if hint.__name__ not in defs:
            defs[hint.__name__] = {}  # placeholder: recursion stops here
            defs[hint.__name__] = _object_schema(hint, defs)
        return {"$ref": f"#/$defs/{hint.__name__}"}
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        assert len(inner) == 1, hint
        return {"anyOf": [_type_schema(inner[0], defs, key), {"type": "null"}]}
    if typing.get_origin(hint) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _type_schema(args[0], defs, key)}
        return {
            "type": "array",
            "prefixItems": [_type_schema(a, defs, key) for a in args],
            "items": False,
            "minItems": len(args),
        }
    raise TypeError(f"no JSON Schema for {hint!r}")
