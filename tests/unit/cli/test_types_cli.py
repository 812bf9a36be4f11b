"""CLI: kcrash struct / kcrash p on a synthetic program (open_target replaced), text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcrash.cli import main
from kcrash.errors import SymbolNotFoundError
from kcrash.memory import MemoryReader, SegmentMap
from kcrash.types.btf import parse_btf
from kcrash.types.program import Program
from support.btf_write import BtfWriter

BASE = 0xFFFF888000000000
TASK = BASE + 0x100


class _Symbols:
    def address_of(self, name: str) -> int:
        if name == "init_task":
            return TASK
        raise SymbolNotFoundError(name)


def _program() -> Program:
    w = BtfWriter()
    i = w.add_int("int", 4, signed=True)
    c = w.add_int("char", 1, signed=True, char=True)
    lp = w.add_ptr(4)
    w.add_struct("list_head", 16, [("next", lp, 0, 0), ("prev", lp, 64, 0)])
    comm = w.add_array(c, 16, i)
    w.add_struct("task_struct", 40, [("pid", i, 0, 0), ("comm", comm, 32, 0), ("tasks", 4, 192, 0)])
    memory = bytearray(0x1000)
    memory[0x100:0x104] = (1).to_bytes(4, "little")
    memory[0x104:0x10A] = b"init\0\0"
    memory[0x118:0x120] = (TASK + 24).to_bytes(8, "little")
    segments = SegmentMap()
    segments.add_segment(BASE, len(memory), lambda a, n: bytes(memory[a - BASE:a - BASE + n]), physical=False)
    return Program(MemoryReader(segments), _Symbols(), parse_btf(w.to_bytes()))


@pytest.fixture
def dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "vmcore"
    path.write_bytes(b"not really a dump")
    monkeypatch.setattr("kcrash.analysis.target.open_target", lambda p, cache, orc=True, **kw: _program())
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_struct_layout(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "struct", dump, "task_struct")
    assert code == 0
    assert out.splitlines() == ["struct task_struct {", "       [0] int pid;", "       [4] char comm[16];",
                                "      [24] struct list_head tasks;", "}", "SIZE: 40"]
    code, out, _ = _run(capsys, "struct", dump, "task_struct", "--json")
    data = json.loads(out)
    assert data["size"] == 40 and [m["offset"] for m in data["members"]] == [0, 4, 24]


def test_struct_at_address_and_expression(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "struct", dump, "task_struct", f"{TASK:x}")
    assert code == 0 and '.comm = "init",' in out and ".pid = 1," in out
    code, out, _ = _run(capsys, "struct", dump, "list_head", "&init_task.tasks", "--json")
    data = json.loads(out)
    assert data["address"] == hex(TASK + 24) and data["value"]["next"] == hex(TASK + 24)


def test_print(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "p", dump, "init_task.comm")
    assert (code, out) == (0, '(char [16])"init"\n')
    code, out, _ = _run(capsys, "p", dump, "init_task.pid", "--json")
    assert json.loads(out) == {"address": hex(TASK), "type": "int", "value": 1}  # an int: the C type decides


@pytest.mark.parametrize(("args", "message"), [
    (("p", "init_task.nope"), "has no member 'nope'"),
    (("p", "init_task +"), "expected an expression at the end"),
    (("p", "init_task.pid ? 1 : 2"), "unexpected '? 1 : 2' at column 14"),
    (("p", "1 << 40"), "shift count 40"),
    (("whatis", "init_task.nope"), "has no member 'nope'"),
    (("p", "*(int *)0x10"), "cannot read"),
    (("p", "missing"), "no symbol or enum constant 'missing'"),
    (("struct", "nope"), "no type 'nope'"),
])
def test_errors_are_one_line(dump: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                             message: str) -> None:
    code, out, err = _run(capsys, args[0], dump, *args[1:])
    assert code == 1 and out == ""
    assert err.startswith("kcrash: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_print_arithmetic_and_leading_minus(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "p", dump, "init_task.pid + 1")
    assert (code, out) == (0, "(int)2\n")
    code, out, _ = _run(capsys, "p", dump, "-1", "<", "0u")  # the rest of the line is the expression, as crash
    assert (code, out) == (0, "(int)0\n")
    code, out, _ = _run(capsys, "p", dump, "sizeof(struct task_struct)", "--json")
    assert json.loads(out) == {"address": None, "type": "long unsigned int", "value": "0x28"}


def test_print_untyped_global_and_declare(dump: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def address_of(self: _Symbols, name: str) -> int:
        if name in ("init_task", "blob"):
            return TASK
        raise SymbolNotFoundError(name)

    monkeypatch.setattr(_Symbols, "address_of", address_of)
    code, out, err = _run(capsys, "p", dump, "blob")
    assert code == 1 and out == "" and "Program.declare" not in err
    assert err.strip() == (f"kcrash: error: no type known for blob at {TASK:#x} (BTF has variable entries for "
                           "per-CPU variables only): cast it: (TYPE)blob or *(TYPE *)&blob")
    code, out, _ = _run(capsys, "p", dump, "((struct task_struct *)&blob)->pid")
    assert (code, out) == (0, "(int)1\n")
    code, out, _ = _run(capsys, "p", "--declare", "struct task_struct blob", dump, "blob.comm")
    assert (code, out) == (0, '(char [16])"init"\n')


def test_whatis(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "whatis", dump, "init_task")
    assert (code, out) == (0, "struct task_struct init_task;\n")
    code, out, _ = _run(capsys, "whatis", dump, "task_struct.comm")
    assert (code, out) == (0, "char comm[16];  /* offset 4, size 16 */\n")
    code, out, _ = _run(capsys, "whatis", dump, "init_task.pid * 2")
    assert (code, out) == (0, "int\n")
    code, out, _ = _run(capsys, "whatis", dump, "list_head")
    assert code == 0 and out.splitlines()[0] == "struct list_head {" and out.splitlines()[-1] == "SIZE: 16"
    code, out, _ = _run(capsys, "whatis", dump, "task_struct", "--json")
    data = json.loads(out)
    assert (data["kind"], data["size"], [m["name"] for m in data["layout"]["members"]]) == \
        ("type", 40, ["pid", "comm", "tasks"])


def test_print_and_struct_in_hex(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "p", "-x", dump, "init_task.pid - 2")
    assert (code, out) == (0, "(int)0xffffffff\n")
    code, out, _ = _run(capsys, "struct", "-x", dump, "task_struct", "init_task")
    assert code == 0 and ".pid = 0x1," in out
