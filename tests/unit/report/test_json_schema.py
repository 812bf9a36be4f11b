"""The JSON renderer and its published schema: the shipped schema.json is the one derived from the
model, the sample report validates, and broken documents do not."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest

from kcrash.cli import main
from kcrash.model import CrashReport
from kcrash.report.json import render_json, schema, schema_from_model


def _validate(doc: Any) -> None:
    jsonschema.validate(doc, schema(), cls=jsonschema.Draft202012Validator)


def test_shipped_schema_is_derived_from_the_model() -> None:
    assert schema() == schema_from_model(), "regenerate src/kcrash/report/schema.json from schema_from_model()"
    jsonschema.Draft202012Validator.check_schema(schema())


def test_sample_report_validates(report: CrashReport) -> None:
    doc = json.loads(render_json(report))
    _validate(doc)
    assert doc["verdict"]["signature"] == "kc1-0123456789abcdef"
    assert doc["regions"]["regions"][1]["perms"] == "r-xp"
    assert doc["tasks"][3]["comm"] == "nu\\xff\\xfe\x01<b>"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("verdict"),
        lambda d: d.update(extra=1),
        lambda d: d["backtrace"]["frames"][0].update(pc=0xFFFF),  # addresses are "0x..." strings
        lambda d: d["backtrace"]["frames"][0].update(pc="65535"),
        lambda d: d["context"].update(registers=[["rip"]]),
        lambda d: d["memory"]["top_slabs"][0].pop("total_bytes"),
        lambda d: d["dump"].update(collected="yesterday"),
    ],
)
def test_broken_documents_are_rejected(report: CrashReport, mutate: Any) -> None:
    doc = copy.deepcopy(json.loads(render_json(report)))
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        _validate(doc)


def test_cli_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema()


def test_cli_report_without_dump_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report"]) == 2
    assert "missing argument DUMP" in capsys.readouterr().err


def test_oops_and_every_cpu_validate(report: CrashReport) -> None:
    from support.report_cpus_sample import with_cpus

    doc = json.loads(render_json(with_cpus(report)))
    _validate(doc)
    assert [c["cpu"] for c in doc["cpus"]] == [1, 0] and doc["cpus"][0]["panic"] is True
    assert doc["oops"]["code"]["text"].startswith("Code: ") and len(doc["oops"]["lines"]) == 5
    assert len(doc["task_traces"]) == len(doc["tasks"]) and doc["frame_disassembly"]
    broken = copy.deepcopy(doc)
    broken["cpus"][0]["registers_from"] = None
    with pytest.raises(jsonschema.ValidationError):
        _validate(broken)
