"""Structured fields, line prefixes, demangling, title normalisation and guilty files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.oops import parse
from kcrash.oops.demangle import demangle
from kcrash.oops.details import parse_bug_location, parse_code, parse_details, parse_frame
from kcrash.oops.guilty import guilty_file
from kcrash.oops.lines import CONSOLE, line_context, strip_line
from kcrash.oops.title import normalize_title, title_to_type

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "oops" / "x86_64"


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="latin-1").split("\n\n", 1)[1]


def test_debian_null_deref_fields() -> None:
    rep = parse(_fixture("002.txt"))
    assert rep is not None
    d = rep.details
    assert (d.cpu, d.pid, d.comm, d.kernel_release) == (0, 998, "bash", "6.1.0-18-amd64")
    assert d.tainted is True and d.taint_flags == "GOE"
    assert d.hardware_name.startswith("QEMU Standard PC (Q35")
    assert d.rip is not None
    assert (d.rip.function, d.rip.offset, d.rip.module) == ("kcrash_test_level2", 0x15, "kcrash_test")
    regs = {r.name: r.value for r in d.registers}
    assert regs["RAX"] == 0 and regs["CR2"] == 0x10 and regs["RSP"] == 0xFFFFA8E2C0D77D98
    assert d.code is not None and d.code.fault_index is not None and d.code.data[d.code.fault_index] == 0x48
    level1 = next(f for f in d.call_trace if f.function == "kcrash_test_level1")
    assert (level1.module, level1.reliable, level1.section, level1.size) == ("kcrash_test", True, "TASK", 0x20)
    assert any(not f.reliable for f in d.call_trace)


def test_task_line_with_a_capture_kernel_loaded() -> None:
    # the kdump lab's 6.1 and 6.12 oopses: "Kdump: loaded " between the comm and the taint
    for line, cpu in (("CPU: 1 PID: 1 Comm: init Kdump: loaded Tainted: G           OE      6.1.0-56-amd64 #1  "
                       "Debian 6.1.192-2", 1),
                      ("CPU: 0 UID: 0 PID: 1 Comm: init Kdump: loaded Not tainted 6.12.118+deb12-amd64 #1", 0)):
        d = parse_details([line])
        assert (d.cpu, d.pid, d.comm) == (cpu, 1, "init") and d.kernel_release.startswith("6.1")
        assert d.tainted is (cpu == 1) and d.taint_flags == ("GOE" if cpu == 1 else "")


def test_irq_and_nmi_sections() -> None:
    rep = parse(_fixture("007.txt"))
    assert rep is not None
    sections = {f.function: f.section for f in rep.details.call_trace}
    assert sections["hrtimer_interrupt"] == "IRQ" and sections["kcrash_test_init"] == "TASK"


@pytest.mark.parametrize(("line", "ctx", "text"), [
    ("[  12.345678] BUG: x", CONSOLE, "BUG: x"),
    ("[  12.345678][ T1234] BUG: x", "[ T1234]", "BUG: x"),
    ("[  12.345678][    C1] BUG: x", "[    C1]", "BUG: x"),
    ("<4>[  12.345678] BUG: x", CONSOLE, "BUG: x"),
    ("Jan  2 03:04:05 host kernel: [  12.3] BUG: x", CONSOLE, "BUG: x"),
    ("2024-01-02T03:04:05.123456+01:00 host kernel: BUG: x", "syslog", "BUG: x"),
    ("[Tue Jan  2 03:04:05 2024] BUG: x", CONSOLE, "BUG: x"),
    ("BUG: x", "", "BUG: x"),
])
def test_line_prefixes(line: str, ctx: str, text: str) -> None:
    assert line_context(line) == ctx
    assert strip_line(line, ctx) == (text, False)


def test_questionable_frames() -> None:
    assert strip_line("[ 1.0]  ? foo+0x1/0x2", CONSOLE) == (" foo+0x1/0x2", True)


def test_frame_parsing() -> None:
    frame = parse_frame(" ? kcrash_test_level2+0x15/0x30 [kcrash_test]")
    assert frame is not None and (frame.function, frame.offset, frame.size, frame.module, frame.reliable) == (
        "kcrash_test_level2", 0x15, 0x30, "kcrash_test", False)
    inline = parse_frame(" __dump_stack lib/dump_stack.c:16 [inline]")
    assert inline is not None and inline.inline and inline.source == "lib/dump_stack.c:16"
    assert parse_frame("Modules linked in: x") is None
    code = parse_code("Code: 0f 0b <0f> 0b")
    assert code is not None and code.data == bytes.fromhex("0f0b0f0b") and code.fault_index == 2


@pytest.mark.parametrize(("mangled", "name"), [
    ("_Z8fakeNameiii", "fakeName"), ("_ZN3foo3barEv", "foo::bar"),
    ("_ZN4core3fmt5write17h0123456789abcdefE", "core::fmt::write"),
    ("_RNvMs3_NtCshgDM7dBCdno_11rust_binder7processNtB5_7Process10update_ref",
     "<rust_binder::process::Process>::update_ref"),
    ("plain_c_function", "plain_c_function"), ("_Zbroken", "_Zbroken"),
])
def test_demangle(mangled: str, name: str) -> None:
    assert demangle(mangled) == name


def test_title_normalisation_and_type() -> None:
    assert normalize_title("KASAN: slab-out-of-bounds in ip6_fragment+0x1052/0x2d80 at addr ffff8800b46111c0") == \
        "KASAN: slab-out-of-bounds in ip6_fragment at addr ADDR"
    assert normalize_title("executor 0 failed 11 times") == "executor NUM failed NUM times"
    assert title_to_type("KASAN: use-after-free Read in foo") == "KASAN-USE-AFTER-FREE-READ"
    assert title_to_type("something else") == ""


def test_guilty_file_skips_generic_files() -> None:
    report = ("Call Trace:\n dump_stack+0x1/0x2 lib/dump_stack.c:52\n kfree+0x1/0x2 mm/slub.c:3000\n"
              " ext4_fill_super+0x1/0x2 fs/ext4/super.c:10\n mount_bdev+0x1/0x2 fs/super.c:1\n")
    assert guilty_file("WARNING in ext4_fill_super", report) == "fs/ext4/super.c"


@pytest.mark.parametrize(("line", "where"), [
    ("[    7.415695] kernel BUG at /root/.cache/kcrash/kmod/6.12.118+deb12-amd64-d9.build/kcrash_test.c:274!",
     ("/root/.cache/kcrash/kmod/6.12.118+deb12-amd64-d9.build/kcrash_test.c", 274)),
    ("WARNING: CPU: 1 PID: 17 at mm/slub.c:4567 kfree+0x1/0x2", ("mm/slub.c", 4567)),
    ("BUG: failure at fs/ext4/inode.c:12/ext4_iget()!", ("fs/ext4/inode.c", 12)),
    ("BUG: kernel NULL pointer dereference, address: 0000000000000010", None),
])
def test_bug_location(line: str, where: tuple[str, int] | None) -> None:
    # issue 22: the file and line of a BUG()/WARN() for a source snippet without debug information
    assert parse_bug_location(line) == where
