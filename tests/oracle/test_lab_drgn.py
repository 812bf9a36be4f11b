"""Oracle: drgn (PyPI) with the Debian -dbg vmlinux reads our lab dumps and sees the module crash."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]


def _crashed_stack(dump: Path, debug_files: list[Path]) -> list[str]:
    prog = drgn.Program()
    prog.set_core_dump(str(dump))
    # Other modules of the guest have no debug info here; vmlinux and ours are loaded.
    with contextlib.suppress(drgn.MissingDebugInfoError):
        prog.load_debug_info([str(p) for p in debug_files])
    return [frame.name or "" for frame in prog.crashed_thread().stack_trace()]


@pytest.mark.parametrize(("kernel", "kaslr"), [("6.1", True), ("6.12", False)])
def test_drgn_sees_the_module_crash_in_the_crashed_thread(
        lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path], kernel: str, kaslr: bool) -> None:
    out = lab_crash("BUG", kernel, kaslr)
    info = json.loads((out / "lab.json").read_text())
    vmlinux = lab_vmlinux_dbg(kernel)
    dbg_modules = sorted(vmlinux.parents[2].glob("lib/modules/*/kernel/drivers/**/*.ko"))
    names = _crashed_stack(out / "vmcore.elf", [vmlinux, Path(info["module"]["path"]), *dbg_modules])
    crash_fn = info["crash_function"]
    assert crash_fn in names
    # The module's two noinline levels sit right above it, then the debugfs write path.
    i = names.index(crash_fn)
    assert names[i + 1:i + 3] == ["kcrash_test_level2", "kcrash_test_level1"]
    assert "panic" in names[:i]


def _program(out: Path, vmlinux: Path) -> drgn.Program:
    info = json.loads((out / "lab.json").read_text())
    prog = drgn.Program()
    prog.set_core_dump(str(out / "vmcore.elf"))
    with contextlib.suppress(drgn.MissingDebugInfoError):
        prog.load_debug_info([str(vmlinux), info["module"]["path"]])
    return prog


@pytest.mark.parametrize(("kernel", "kaslr"), [("6.1", True), ("6.12", False)])
def test_drgn_finds_the_planted_data(lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
                                     kernel: str, kaslr: bool) -> None:
    """What lab.json says the module planted is really in the dump, as a peer tool reads it."""
    from drgn.helpers.linux.list import list_for_each_entry
    from drgn.helpers.linux.pid import for_each_task

    out = lab_crash("BUG", kernel, kaslr)
    planted = json.loads((out / "lab.json").read_text())["planted"]
    prog = _program(out, lab_vmlinux_dbg(kernel))
    tasks = {t.comm.string_(): t for t in for_each_task(prog)}
    assert planted["hostile_task"].encode() in tasks
    assert bytes.fromhex(planted["nonutf8_task_hex"]) in tasks
    sleeper = [f.name for f in prog.stack_trace(tasks[planted["sleeper_task"].encode()])]
    assert planted["sleeper_function"] in sleeper
    head = prog[planted["list"]].address_of_()
    objs = list(list_for_each_entry(f"struct {planted['object_struct']}", head, "node"))
    assert len(objs) == planted["object_count"]
    assert {o.magic.value_() for o in objs} == {planted["object_magic"]}
    assert [o.tag.string_() for o in objs[:3]] == [b"obj-0", b"obj-1", b"obj-2"]
    glob = prog[planted["global"]]
    assert glob.address_of_().value_() == planted["global_address"]
    assert head.value_() == planted["list_address"]
    for field in ("answer", "negative", "big", "flag_a", "mode", "level", "nr_objects"):
        assert getattr(glob, field).value_() == planted["global_values"][field], field
    assert glob.name.string_().decode() == planted["global_values"]["name"]
    assert glob.self.value_() == planted["global_address"]
    assert glob.first.value_() == objs[0].value_()  # list_for_each_entry yields pointers
