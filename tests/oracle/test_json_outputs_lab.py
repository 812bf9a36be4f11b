"""Every ``--json`` output of kcrash on a real crash (BUG on 6.12, the lab module loaded; issue 22
item 7): numbers follow the one rule (addresses and other 64-bit values are ``"0x…"`` strings, no
integer reaches 2^53, where JavaScript's ``JSON.parse`` starts rounding), each output validates
against its shipped, versioned JSON Schema, and ``log`` and ``dump dmesg`` print one record shape.

There is no peer to compare with here: the oracle is the JSON rule itself (and jsonschema).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
from click.testing import CliRunner

from kcrash.cli.app import COMMANDS, kcrash, load_command
from kcrash.report import json as report_json
from kcrash.report.json import JSON_SAFE_INTEGER, is_hex_field, output_schema, output_schema_names
from support.drgn_oracle import case_id
from support.json_commands import INVOCATIONS, NOT_RUN
from support.json_schemas import C_VALUE_OUTPUTS, run_outputs

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

Output = tuple[str, list[str], Any]


#: the QEMU lab's BUG on 6.12, and the dump kcrash's collector wrote of the same kind in the kdump
#: lab's capture kernel (issue 20: every command runs on it too)
CASES = [("BUG", "6.12", False), ("BUG", "6.12", False, "vmcore.kcrash")]


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def crash(request: pytest.FixtureRequest, lab_case: Callable[..., Path]) -> Path:
    return lab_case(request.param)


@pytest.fixture(scope="module")
def outputs(crash: Path, lab_vmlinux_dbg: Callable[[str], Path]) -> list[Output]:
    def unclassified(key: str | None, value: int) -> object:
        raise AssertionError(f"integer {value:#x} in field {key!r}: not named by kcrash.report.json.HEX_FIELDS")

    with pytest.MonkeyPatch.context() as mp:  # the safety net fails loudly here instead of hiding a miss
        mp.setattr(report_json, "_unclassified", unclassified)
        return list(run_outputs(crash, lab_vmlinux_dbg("6.12"), module=True))


def _json_commands() -> Iterator[str]:
    for name in COMMANDS:
        command = load_command(name)
        subs = command.commands.items() if isinstance(command, click.Group) else [(None, command)]
        for sub, cmd in subs:
            if any("--json" in p.opts for p in cmd.params if isinstance(p, click.Option)):
                yield name if sub is None else f"{name}-{sub}"


def test_every_json_output_is_run_and_has_a_schema() -> None:
    commands = set(_json_commands())
    run = {name for name, _, _ in INVOCATIONS}
    assert commands == run | set(NOT_RUN), "add the command to tests/support/json_commands.py"
    assert set(output_schema_names()) == run | set(NOT_RUN), "regenerate: tests/support/json_schemas.py --write"


# Inside C values (object_to_json; C_VALUE_OUTPUTS: the outputs and keys holding them) the C type
# decides, not the member's name: a pointer or an integer wider than 32 bits is a string, the rest integers.
def _walk(value: Any, key: str | None, parent: str | None, where: str,
          c_values: frozenset[str] = frozenset()) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, k, key, f"{where}.{k}", c_values)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, key, parent, f"{where}[{i}]", c_values)
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= JSON_SAFE_INTEGER:
            yield f"{where}: {value} reaches 2^53"
        if _inside_c_value(where, c_values):
            if not -(2**31) <= value < 2**32:
                yield f"{where}: {value} is a C integer wider than 32 bits"
        elif key is not None and is_hex_field(key, parent):
            yield f"{where}: {value} is an integer in an address field"


def _inside_c_value(where: str, c_values: frozenset[str]) -> bool:
    return any(part.split("[")[0] in c_values for part in where.split(".")[1:])


def _problems(name: str, argv: list[str], data: Any) -> Iterator[str]:
    return _walk(data, None, None, argv[0], C_VALUE_OUTPUTS.get(name, frozenset()))


def test_numbers_follow_the_rule_in_every_output(outputs: list[Output]) -> None:
    bad = [problem for name, argv, data in outputs for problem in _problems(name, argv, data)]
    assert not bad, bad[:20]
    # the rule is not vacuous: every output with an address field carries it as a string
    by_name = {name: data for name, _, data in outputs}
    assert by_name["bt"][0]["trace"]["frames"][0]["pc"].startswith("0xffffffff")
    assert by_name["sys"]["taint_mask"].startswith("0x") and isinstance(by_name["sys"]["cpus"], int)
    assert by_name["ps"]["tasks"][0]["task"].startswith("0xffff") and by_name["ps"]["tasks"][0]["pid"] == 0
    # C values follow the C type: pid_t 1 is an integer in a field named "value", a pointer a string
    by_argv = {" ".join(a for a in argv[:1] + argv[2:] if a != "--json"): data for _, argv, data in outputs}
    members = {m["name"]: m["value"] for m in by_argv["task 1 -R pid,comm"][0]["members"]}
    assert members["pid"] == 1 and members["comm"] == "init"
    tasks = by_argv["struct list_head &init_task.tasks"]["value"]
    assert tasks["next"].startswith("0xffff") and tasks["prev"].startswith("0xffff")
    # a page count is an integer, also for the page cache's class (not a kmem cache address)
    excluded = by_name["dump-convert"]["excluded"]
    usage = by_argv["kmem -i"]
    assert isinstance(usage["slab_pages"], int) and usage["slab_pages"] > 0 and "slab" not in usage
    assert isinstance(excluded["cache"], int) and sum(excluded.values()) + by_name["dump-convert"]["remaining"] > 0


def test_every_output_validates_against_its_schema(outputs: list[Output]) -> None:
    checked = set()
    for name, argv, data in outputs:
        schema = output_schema(name)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert str(schema["$id"]).endswith(f"-{schema['schema_version']}.json"), name  # versioned
        jsonschema.Draft202012Validator.check_schema(schema)
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
        assert not errors, (argv, errors[0].message, list(errors[0].absolute_path))
        checked.add(name)
    # live and collect-qemu need a running guest: their lab tests validate them (NOT_RUN)
    assert checked == set(output_schema_names()) - {"live", "collect-qemu"}


def test_a_changed_output_is_rejected(outputs: list[Output]) -> None:
    log = next(data for name, _, data in outputs if name == "log")
    validator = jsonschema.Draft202012Validator(output_schema("log"))
    renamed = [{("timestamp_ns" if k == "ts_nsec" else k): v for k, v in r.items()} for r in log]
    as_integers = [{**r, "ts_nsec": int(r["ts_nsec"], 16) + JSON_SAFE_INTEGER} for r in log]
    assert not validator.is_valid(renamed) and not validator.is_valid(as_integers)


def test_log_and_dmesg_print_one_record_shape(outputs: list[Output]) -> None:
    by_name = {name: data for name, _, data in outputs}
    log, dmesg, report = by_name["log"], by_name["dump-dmesg"], by_name["report"]
    assert log == dmesg and len(log) > 100
    assert set(log[0]) == {"seq", "ts_nsec", "level", "facility", "caller", "text"}
    assert {r["level"] for r in log} <= set(range(8)) and any(r["level"] == 4 for r in log)  # KERN_WARNING
    tail = report["log_tail"]
    assert tail == [r for r in log if r["seq"] >= tail[0]["seq"]][:len(tail)]  # the report's lines are records


def test_schema_command() -> None:
    result = CliRunner().invoke(kcrash, ["schema"])
    assert result.exit_code == 0 and result.stdout.split() == output_schema_names()
    result = CliRunner().invoke(kcrash, ["schema", "dump-dmesg"])
    assert result.exit_code == 0 and json.loads(result.stdout) == output_schema("dump-dmesg")
    assert json.loads(CliRunner().invoke(kcrash, ["schema", "report"]).stdout) == report_json.schema()
