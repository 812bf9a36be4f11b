"""kcrash dis on a real lab dump (lab) and its bad input (unit)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.cli import main


def test_not_a_dump_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"nothing here" * 10)
    assert main(["dis", str(junk), "ksys_write"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kcrash: error:") and err.count("\n") == 1


@pytest.mark.lab
@pytest.mark.oracle
def test_function_bytes_equal_objdump_and_source_lines(lab_crash: Callable[..., Path],
                                                       lab_vmlinux_dbg: Callable[[str], Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    dump = lab_crash("sysrq", "6.1") / "vmcore.kdump"
    vmlinux = lab_vmlinux_dbg("6.1")
    assert main(["dis", str(dump), "ksys_write", "-l", "--debuginfo", str(vmlinux), "--json"]) == 0
    import json

    insns = json.loads(capsys.readouterr().out)
    assert insns[0]["offset"] == "0x0" and int(insns[-1]["offset"], 16) < 0x100
    assert any(s["file"].endswith("fs/read_write.c") for i in insns for s in i["source"])
    # The bytes read from the dump's memory are the vmlinux's bytes (ksys_write has no alternatives).
    out = subprocess.run(["nm", str(vmlinux)], capture_output=True, text=True, check=True).stdout
    start = next(int(line.split()[0], 16) for line in out.splitlines() if line.endswith(" ksys_write"))
    dump_bytes = bytes.fromhex("".join(i["data"] for i in insns[:8]))
    text = subprocess.run(["objdump", "-d", f"--start-address={start:#x}", f"--stop-address={start + 64:#x}",
                           str(vmlinux)], capture_output=True, text=True, check=True).stdout
    objdump_bytes = bytes.fromhex("".join(
        "".join(part.split("\t")[1].split()) for part in text.splitlines() if part.count("\t") >= 2))
    assert objdump_bytes.startswith(dump_bytes[5:20]) or dump_bytes[5:20] in objdump_bytes
