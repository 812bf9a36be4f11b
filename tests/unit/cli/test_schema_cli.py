"""``kcrash schema [NAME]``: the versioned JSON Schemas of the --json outputs (issue 22 item 7)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from click.testing import CliRunner

from kcrash.cli import main
from kcrash.cli.app import kcrash
from kcrash.report.json import output_schema_names


def test_lists_and_prints_the_schemas() -> None:
    names = CliRunner().invoke(kcrash, ["schema"]).stdout.split()
    assert names == output_schema_names()
    assert {"bt", "dump-info", "dump-dmesg", "log", "report", "collect-qemu", "live"} <= set(names)
    for name in names:
        result = CliRunner().invoke(kcrash, ["schema", name])
        assert result.exit_code == 0, result.output
        schema = json.loads(result.stdout)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"].endswith(f"-{schema['schema_version']}.json")


def test_log_records_are_the_kernel_printk_info_names() -> None:
    schema = json.loads(CliRunner().invoke(kcrash, ["schema", "log"]).stdout)
    validator = jsonschema.Draft202012Validator(schema)
    record = {"seq": 3, "ts_nsec": "0x1edfcd809", "level": 6, "facility": 0, "caller": "T1", "text": "x"}
    assert validator.is_valid([record]) and validator.is_valid([{**record, "caller": None}])
    assert not validator.is_valid([{**record, "ts_nsec": 8273842185}])  # 64-bit clocks are "0x..." strings
    assert not validator.is_valid([{k: v for k, v in record.items() if k != "ts_nsec"} | {"timestamp_ns": "0x1"}])


def test_unknown_name_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "nope"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("kcrash: error: no JSON schema named 'nope'") and err.count("\n") == 1
