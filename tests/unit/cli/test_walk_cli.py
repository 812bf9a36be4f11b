"""CLI: kcrash list and kcrash tree on a synthetic program (open_target replaced): addresses from
symbols and expressions, -H/-o/-l/-s, --hlist-free list walks ending in a marked cycle, rbtree,
xarray and maple rows, text and JSON, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcrash.cli import main
from support.tree_kernel import BASE, E1, LIST, OBJS, PTR, Kernel, build_list, build_maple, build_rbtree, build_xarray


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Kernel, Path]:
    k = Kernel()
    build_rbtree(k, list(range(0, 70, 7)))
    build_xarray(k)
    build_maple(k)
    path = tmp_path / "vmcore"
    path.write_bytes(b"not really a dump")
    monkeypatch.setattr("kcrash.analysis.target.open_target", lambda p, cache, orc=True, **kw: k.prog)
    return k, path


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_from_the_head_with_members(kernel: tuple[Kernel, Path], capsys: pytest.CaptureFixture[str]) -> None:
    k, dump = kernel
    objs = build_list(k, 5)
    code, out, _ = _run(capsys, "list", dump, "-H", "obj_list", "-l", "obj.node", "-s", "obj.id", "--json")
    data = json.loads(out)
    assert code == 0 and data["truncated"] is None
    assert [(e["address"], e["value"]["id"]) for e in data["entries"]] == [(hex(o), j) for j, o in enumerate(objs)]
    code, out, _ = _run(capsys, "list", dump, f"{objs[2]:#x}", "-o", "8")  # START is an entry: printed
    assert code == 0 and out.split() == [f"{o:x}" for o in objs[2:]] + [f"{LIST - 8:x}", f"{objs[0]:x}",
                                                                         f"{objs[1]:x}"]
    code, out, _ = _run(capsys, "list", dump, "-H", "obj_list", "-o", "8", "-r")
    assert out.split() == [f"{o:x}" for o in reversed(objs)]


def test_list_cycle_ends_with_a_note(kernel: tuple[Kernel, Path], capsys: pytest.CaptureFixture[str]) -> None:
    k, dump = kernel
    objs = build_list(k, 4)
    k.u64(objs[3] + 8, objs[1] + 8)  # the last points back to the second
    code, out, _ = _run(capsys, "list", dump, "-H", "obj_list", "-l", "obj.node", "-s", "obj")
    lines = out.splitlines()
    assert code == 0 and lines[-1].startswith("list: walk stopped: cycle")
    assert [ln for ln in lines if ln and ln[0] in "0123456789abcdef"] == [f"{o:x}" for o in objs]
    assert ".id = 3," in out


def test_tree_kinds(kernel: tuple[Kernel, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, dump = kernel
    code, out, _ = _run(capsys, "tree", dump, "-t", "rbtree", "tree_root", "-s", "item.key", "--json")
    assert code == 0 and [e["struct"]["key"] for e in json.loads(out)["entries"]] == [hex(k) for k in range(0, 70, 7)]
    code, out, _ = _run(capsys, "tree", dump, "-t", "xarray", "tree_xa")
    assert out.splitlines()[:3] == ["[0] value 0", "[5] value 5", f"[8-11] {PTR:x}"]
    code, out, _ = _run(capsys, "tree", dump, "-t", "radix", "tree_xa", "--json")
    rows = json.loads(out)["entries"]
    # an xarray index is any unsigned long: a hex string as addresses (issue 22)
    assert rows[2] == {"index": "0x8", "last": "0xb", "address": hex(PTR)}
    assert rows[0] == {"index": "0x0", "last": "0x0", "value": "0x0"}
    code, out, _ = _run(capsys, "tree", dump, "-t", "maple", "tree_mt")
    assert out.splitlines()[0] == f"[0x1000-0x1fff] {E1:x}"


def test_bad_input_is_one_line(kernel: tuple[Kernel, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, dump = kernel
    code, _, err = _run(capsys, "list", dump, "-H", "obj_list", "-o", "8", "-l", "obj.node")
    assert code == 2 and "not both" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "list", dump, "obj_list", "-s", "obj.nope")
    assert code == 1 and "no member 'nope'" in err
    code, _, err = _run(capsys, "tree", dump, "-t", "xarray", f"{BASE + 0x100000:#x}")
    assert code == 1 and "cannot read the xarray root" in err and len(err.strip().splitlines()) == 1
    assert OBJS > BASE
