"""``kcrash decode`` on the console logs of real lab crashes, against decode_stacktrace.sh's method.

The script is not shipped in Debian's headers/kbuild packages, so its per-frame behaviour is
emulated with binutils: the function's base address from ``nm`` (first ``t``/``T`` match, as its awk
does), plus the offset, then one ``addr2line -i -e OBJ ADDR`` per frame, where ADDR is one byte back
for a call-trace frame (a return address: kcrash names the call site, as gdb and ``bt --debuginfo``
do, where the script names the line after the call) and the address itself for a ``RIP:`` frame, the
source-tree prefix stripped, the inline lines joined by spaces. For a module symbol the script
passes the ``.ko`` without ``-j``; that only works for symbols in ``.text`` (all sections of a
``.ko`` start at 0), so ``-j`` names the symbol's section here. Frames whose name is ambiguous in
``nm`` (static functions of the same name) are skipped: the script takes the first match, kcrash the
one whose size matches the frame.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.analysis.decode import decode_log_text, source_roots
from kcrash.cli import main
from kcrash.debuginfo.symbolizer import open_symbolizers
from kcrash.oops import read_log
from kcrash.oops.details import parse_code

pytestmark = [pytest.mark.lab, pytest.mark.oracle,
              pytest.mark.skipif(shutil.which("addr2line") is None, reason="binutils is not installed")]

KINDS = ["bug", "sysrq", "hung_abba", "null_read", "warning", "divzero", "panic"]
_FRAME = re.compile(r"([^\s+:(]+)\+(0x[0-9a-f]+)/(0x[0-9a-f]+)(?:\s+\[(\S+)\])?")


def nm_table(path: Path) -> dict[str, list[tuple[int, str]]]:
    out = subprocess.run(["nm", "-n", str(path)], capture_output=True, text=True, check=True).stdout
    table: dict[str, list[tuple[int, str]]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tT":
            table.setdefault(parts[2], []).append((int(parts[0], 16), parts[1]))
    return table


def section_of(path: Path, name: str) -> str:
    out = subprocess.run(["objdump", "-t", str(path)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.split()[-1:] == [name]:
            return line.split()[3]
    return ".text"


def emulate_script_frame(obj: Path, nm: dict[str, list[tuple[int, str]]], name: str, offset: int,
                         prefix: str, relocatable: bool) -> str:
    base = nm[name][0][0]
    extra = ["-j", section_of(obj, name)] if relocatable else []
    out = subprocess.run(["addr2line", "-i", *extra, "-e", str(obj), hex(base + offset)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    stripped = [line.removeprefix(prefix.rstrip("/") + "/") if prefix else line for line in out]
    return "(" + " ".join(line.split(" (discriminator")[0] for line in stripped) + ")"


@pytest.mark.parametrize("kind", KINDS)
def test_decode_equals_decode_stacktrace_on_every_frame(kind: str, lab_crash: Callable[..., Path],
                                                        lab_vmlinux_dbg: Callable[[str], Path]) -> None:
    crash = lab_crash(kind, "6.1")
    module = Path(json.loads((crash / "lab.json").read_text())["module"]["path"])
    vmlinux = lab_vmlinux_dbg("6.1")
    text = read_log(crash / "console.log")
    symbolizer = open_symbolizers(vmlinux, {"kcrash_test": (module, 0)}, cache_dir=None)
    try:
        decoded = decode_log_text(text, symbolizer)
        roots = source_roots(symbolizer)
    finally:
        symbolizer.close()
    tables = {"": nm_table(vmlinux), "kcrash_test": nm_table(module)}
    objects = {"": vmlinux, "kcrash_test": module}
    compared = 0
    for line in decoded.lines:
        found = _FRAME.search(line)
        if found is None or "(" not in line[found.end():]:
            continue
        name, offset, _size, mod = found.group(1), int(found.group(2), 16), found.group(3), found.group(4) or ""
        if mod not in tables or len(tables[mod].get(name, [])) != 1:
            continue
        ours = line[found.end():].strip()
        call_site = offset - (0 if "RIP: " in line else 1)
        theirs = emulate_script_frame(objects[mod], tables[mod], name, call_site, roots[mod] or "", bool(mod))
        # The frame's text may be followed by nothing else: the annotation is the rest of the line.
        assert ours == theirs, line
        compared += 1
    assert compared >= 3
    for block in decoded.code:
        faulting = [i for i in block if i.faulting]
        assert len(faulting) == 1
    if kind == "bug":
        rip = next(f for k, f in decoded.frames.items() if k.startswith("kcrash_test_do_bug+"))
        assert rip.locations and rip.locations[0].file.endswith("kcrash_test.c")
        assert any(i.faulting and i.text == "ud2" for block in decoded.code for i in block)


def test_every_code_line_is_decoded_from_its_own_bytes(lab_crash: Callable[..., Path],
                                                       lab_vmlinux_dbg: Callable[[str], Path]) -> None:
    # The 6.12 BUG log has three Code: lines: the kernel's, the user's (``RIP: 0033:`` of the write
    # syscall's entry registers) and the kernel's again after the end-of-trace marker.
    crash = lab_crash("BUG", "6.12", False)
    text = read_log(crash / "console.log")
    symbolizer = open_symbolizers(lab_vmlinux_dbg("6.12"), {}, cache_dir=None)
    try:
        decoded = decode_log_text(text, symbolizer)
    finally:
        symbolizer.close()
    lines = [line[line.index("Code: "):] for line in text.splitlines() if "Code: " in line]
    codes = [c for c in map(parse_code, lines) if c is not None]
    rips = [line.split("RIP: ")[1] for line in text.splitlines() if "RIP: " in line]
    assert len(codes) == len(decoded.code) >= 2 and any(r.startswith("0033:0x") for r in rips)
    for code, block, rip in zip(codes, decoded.code, rips, strict=True):
        fault = next(i for i in block if i.faulting)
        decoded_bytes = b"".join(i.data for i in block)
        assert decoded_bytes in code.data
        assert code.data[code.fault_index:].startswith(fault.data)
        if rip.startswith("0033:0x"):
            assert fault.address == int(rip.split(":0x")[1], 16)
    user = next(b for b, r in zip(decoded.code, rips, strict=True) if r.startswith("0033:"))
    assert not any(i.faulting and i.text == "ud2" for i in user)


def test_a_log_of_another_package_build_is_refused(lab_crash: Callable[..., Path],
                                                   lab_vmlinux_dbg: Callable[[str], Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # The real 6.12.118-1~deb12u1 log made the log of 6.12.117-1~deb12u1 (same release string, as
    # between two Debian package versions): the -dbg vmlinux of 6.12.118 is refused by its
    # linux_banner, taken with one warning under --force, and taken silently for its own log.
    crash = lab_crash("BUG", "6.12", False)
    text = read_log(crash / "console.log")
    assert "Debian 6.12.118-1~deb12u1" in text
    other = tmp_path / "console.log"
    other.write_text(text.replace("6.12.118-1~deb12u1", "6.12.117-1~deb12u1"))
    args = ["decode", "--debuginfo", str(lab_vmlinux_dbg("6.12")), "--no-cache"]
    assert main([*args, str(other)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another kernel build" in err and "6.12.117-1~deb12u1" in err
    assert main([*args, "--force", str(other)]) == 0
    assert capsys.readouterr().err.startswith("kcrash: warning:")
    assert main([*args, str(crash / "console.log")]) == 0
    assert capsys.readouterr().err == ""
