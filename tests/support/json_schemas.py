"""Run every ``--json`` output of kcrash on lab crashes, and derive the JSON Schemas kcrash ships
(``src/kcrash/report/schemas/NAME.json``, printed by ``kcrash schema NAME``) from what they print.

The derivation is a bootstrap, reviewed by hand and then kept: a property seen in every sample is
required; integers are bounded by 2^53 (the README's JSON rule: larger values are ``"0x…"``
strings); a string of a hex field (:func:`kcrash.report.json.is_hex_field`) that always looked
like ``0x…`` must keep looking so; a C object's value (``p``, ``struct``, ``task -R``, ``list -s``,
``tree -s``) is any JSON value built by the same rule; an object whose keys are not all names
(``decode``'s frames by their text) is a map of one value schema. Every property may also be null (what one
dump lacks, e.g. the printk caller id, is null), and other properties are allowed (outputs grow).

Regenerate after changing an output on purpose (and bump the schema's version when a field is renamed
or changes type; say so in CHANGELOG.md)::

    .venv/bin/python tests/support/json_schemas.py --write [NAME ...]
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from kcrash.cli.app import kcrash
from kcrash.report.json import HEX_PATTERN, JSON_SAFE_INTEGER, is_hex_field, json_ready

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.json_commands import INVOCATIONS, arguments

__all__ = ["C_VALUE_OUTPUTS", "SCHEMA_DIR", "infer_schema", "run_outputs", "schema_document"]

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "src" / "kcrash" / "report" / "schemas"
_HEX = re.compile(HEX_PATTERN)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_C_VALUE_KEYS = {"value", "struct"}
#: The outputs that carry C values, and the keys holding them (the C type decides: any JSON value
#: by the rule; the JSON lab test shares this table).
C_VALUE_OUTPUTS: dict[str, frozenset[str]] = {
    "p": frozenset({"value"}), "struct": frozenset({"value"}), "task": frozenset({"value"}),
    "foreach": frozenset({"value"}), "list": frozenset({"struct"}), "tree": frozenset({"struct"}),
}
_C_VALUE_DEF: dict[str, Any] = {
    "description": "A C object as JSON: a struct or union is an object by member name, an array a list, "
                   "a char array a string, a pointer or an integer wider than 32 bits a \"0x…\" string.",
    "anyOf": [
        {"type": "string"},
        {"$ref": "#/$defs/int53"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": {"$ref": "#/$defs/c_value"}},
        {"type": "object", "additionalProperties": {"$ref": "#/$defs/c_value"}},
    ],
}


def run_outputs(crash: Path, vmlinux: Path | None, *, module: bool) -> Iterator[tuple[str, list[str], Any]]:
    """(schema name, arguments, parsed output) of every invocation that this crash can run."""
    runner = CliRunner()
    panic = runner.invoke(kcrash, ["sym", str(crash / "vmcore.elf"), "panic", "--json"])
    panic_addr = int(json.loads(panic.stdout)[0]["matches"][0]["address"], 16)
    with tempfile.TemporaryDirectory() as tmp:
        for n, (name, args, needs) in enumerate(INVOCATIONS):
            if ("module" in needs and not module) or ("debuginfo" in needs and vmlinux is None):
                continue
            argv = arguments(args, crash, vmlinux, Path(tmp) / f"out{n}", panic_addr)
            result = runner.invoke(kcrash, argv)
            assert result.exit_code == 0, (argv, result.output, result.exception)
            yield name, argv, json.loads(result.stdout)
        lab = json.loads((crash / "lab.json").read_text())
        yield "lab-crash", ["lab", "crash", "--json"], json.loads(json.dumps(json_ready(lab), default=str))


def infer_schema(values: list[Any], key: str | None = None, parent: str | None = None, *,
                 c_values: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The schema of the values seen at one place of the output (see the module docstring);
    ``c_values``: the keys holding C values in this output (:data:`C_VALUE_OUTPUTS`)."""
    kinds = {_kind(v) for v in values}
    if kinds <= {"null"}:
        return {}  # seen only as null (or never): no claim
    if key in c_values or (key in _C_VALUE_KEYS and kinds & {"object", "array"}):
        return {"$ref": "#/$defs/c_value"}
    branches = [_branch(kind, [v for v in values if _kind(v) == kind], key, parent, c_values)
                for kind in sorted(kinds)]
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _branch(kind: str, values: list[Any], key: str | None, parent: str | None,
            c_values: frozenset[str]) -> dict[str, Any]:
    if kind == "integer":
        return {"$ref": "#/$defs/int53"}
    if kind == "string":
        hexes = key is not None and is_hex_field(key, parent) and all(_HEX.fullmatch(v) for v in values)
        return {"$ref": "#/$defs/hex"} if hexes else {"type": "string"}
    if kind == "array":
        items = [item for v in values for item in v]
        items_schema = infer_schema(items, key, parent, c_values=c_values)
        return {"type": "array", "items": items_schema} if items else {"type": "array"}
    if kind == "object":
        keys = sorted({k for v in values for k in v})
        if not all(_NAME.fullmatch(k) for k in keys):  # a map (decode's frames by their text), not a record
            values_schema = infer_schema([x for v in values for x in v.values()], c_values=c_values)
            return {"type": "object", "additionalProperties": values_schema}
        required = [k for k in keys if all(k in v for v in values)]
        props = {k: _nullable(infer_schema([v[k] for v in values if k in v], k, key, c_values=c_values))
                 for k in keys}
        return {"type": "object", "properties": props, "required": required}
    return {"type": kind}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if not schema or schema.get("type") == "null":
        return schema
    branches = schema.get("anyOf", [schema])
    if {"type": "null"} in branches:
        return schema
    return {"anyOf": [*branches, {"type": "null"}]}


def schema_document(name: str, samples: list[Any]) -> dict[str, Any]:
    """The shipped schema of output ``name``, versioned (``$id`` and ``schema_version``)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://kcrash.invalid/schema/{name}-1.json",
        "schema_version": 1,
        "title": f"kcrash {name.replace('-', ' ')} --json",
        **infer_schema(samples, c_values=C_VALUE_OUTPUTS.get(name, frozenset())),
        "$defs": {
            "c_value": _C_VALUE_DEF,
            "hex": {"description": "An address or other 64-bit value", "type": "string", "pattern": HEX_PATTERN},
            "int53": {"description": "An integer JavaScript reads exactly", "type": "integer",
                      "minimum": 1 - JSON_SAFE_INTEGER, "maximum": JSON_SAFE_INTEGER - 1},
        },
    }


def _main() -> None:
    from kcrash.lab.crash import CrashOptions, cached_crash
    from kcrash.lab.prepare import fetch_debuginfo

    cache = Path.home() / ".cache" / "kcrash"
    cases = [("BUG", "6.12", False), ("HUNG_ABBA", "6.1", False), ("BUG", "5.10", True), ("SYSRQ", "7", False)]
    samples: dict[str, list[Any]] = {}
    for kind, kernel, kaslr in cases:
        crash = cached_crash(cache, CrashOptions(kind, kernel, kaslr))
        info = json.loads((crash / "lab.json").read_text())
        module = bool(info.get("module") and info["module"].get("btf"))  # list/tree -s need its BTF
        vmlinux = fetch_debuginfo(cache, kernel) if kernel == "6.12" else None
        for name, _argv, data in run_outputs(crash, vmlinux, module=module):
            samples.setdefault(name, []).append(data)
    # the kdump lab's dump (issue 20): kcrash's collector's file, read as DUMP through a directory of links
    kdump = cached_crash(cache, CrashOptions("BUG", "6.12", via="kdump"))
    with tempfile.TemporaryDirectory() as tmp:
        for link, target in (("vmcore.elf", "vmcore.kcrash"), ("console.log", "console.log"), ("lab.json", "lab.json")):
            (Path(tmp) / link).symlink_to(kdump / target)
        for name, _argv, data in run_outputs(Path(tmp), fetch_debuginfo(cache, "6.12"), module=True):
            samples.setdefault(name, []).append(data)
    if "--write" in sys.argv:
        SCHEMA_DIR.mkdir(exist_ok=True)
        only = set(sys.argv[sys.argv.index("--write") + 1:])  # names given: write only those
        for name, values in sorted(samples.items()):
            if name == "report" or (only and name not in only):
                continue  # derived from the report model instead (kcrash.report.json.schema_from_model)
            text = json.dumps(schema_document(name, values), indent=2, sort_keys=True) + "\n"
            (SCHEMA_DIR / f"{name}.json").write_text(text, encoding="utf-8")
    print(f"{len(samples)} outputs: {', '.join(sorted(samples))}")


if __name__ == "__main__":
    _main()
