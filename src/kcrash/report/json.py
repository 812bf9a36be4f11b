"""
kcrash.report.json
==================

The JSON rendering of a :class:`~kcrash.model.CrashReport` and its published JSON Schema
(draft 2020-12, shipped as ``kcrash/report/schema.json`` and printed by ``kcrash report --schema``).
The schema is derived from the model's dataclasses (:func:`schema_from_model`; a test keeps the
shipped file equal to it): every field is required, no others are allowed, ``X | None`` becomes a
nullable type and ``tuple[X, ...]`` an array. Addresses stay integers. Renderers take the model
only.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from importlib import resources

from kcrash import model

__all__ = ["SCHEMA_ID", "render_json", "schema", "schema_from_model"]

SCHEMA_ID = "https://kcrash.invalid/schema/crash-report-1.json"
_SCALARS: dict[object, dict[str, object]] = {
    int: {"type": "integer"},
    str: {"type": "string"},
    bool: {"type": "boolean"},
    float: {"type": "number"},
}


def render_json(report: model.CrashReport) -> str:
    """The report as indented JSON (keys sorted)."""
    return json.dumps(model.to_dict(report), indent=2, sort_keys=True) + "\n"


def schema() -> dict[str, object]:
    """The shipped JSON Schema of :func:`render_json` output."""
    text = resources.files("kcrash.report").joinpath("schema.json").read_text(encoding="utf-8")
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
        "properties": {name: _type_schema(hints[name], defs) for name in fields},
        "required": fields,
        "additionalProperties": False,
    }


def _type_schema(hint: object, defs: dict[str, object]) -> dict[str, object]:
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
        return {"anyOf": [_type_schema(inner[0], defs), {"type": "null"}]}
    if typing.get_origin(hint) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _type_schema(args[0], defs)}
        return {
            "type": "array",
            "prefixItems": [_type_schema(a, defs) for a in args],
            "items": False,
            "minItems": len(args),
        }
    raise TypeError(f"no JSON Schema for {hint!r}")
