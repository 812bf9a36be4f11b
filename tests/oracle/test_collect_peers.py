"""Oracles on the dumps our writers produce from lab crashes: crash 8.0.2 (``log``, ``bt``) with the
``-dbg`` vmlinux, drgn 0.3.0 (crashed thread, log, planted global) and ``makedumpfile --dump-dmesg``
open them as they open real makedumpfile output, in every codec the tool was built with (Debian's
makedumpfile and crash: zlib, lzo and uncompressed; drgn's libkdumpfile: also snappy and zstd)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.collect.convert import ConvertOptions, convert_dump
from kcrash.dumps import open_dump
from kcrash.helpers.linux.printk import format_dmesg, get_printk_records
from kcrash.memory import open_kernel_memory

pytestmark = [pytest.mark.lab, pytest.mark.oracle]
drgn = pytest.importorskip("drgn")

KERNELS = [("bug", "6.1"), ("sysrq", "6.12")]
CRASH_OUTPUTS = [("kdump", "zlib"), ("kdump", "lzo"), ("flat", "zlib"), ("elf", "none")]
MDF_OUTPUTS = [("kdump", "zlib"), ("kdump", "lzo"), ("kdump", "none"), ("elf", "none")]
DRGN_OUTPUTS = [("kdump", "zlib"), ("kdump", "lzo"), ("kdump", "snappy"), ("kdump", "zstd"), ("elf", "none")]


@pytest.fixture(scope="module")
def converted(lab_crash: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
              ) -> Callable[[str, str, str, str], Path]:
    made: dict[tuple[str, ...], Path] = {}

    def get(kind: str, kernel: str, fmt: str, codec: str) -> Path:
        key = (kind, kernel, fmt, codec)
        if key not in made:
            out = tmp_path_factory.mktemp("peers") / f"{kind}-{kernel}.{fmt}.{codec}"
            src = open_dump(lab_crash(kind, kernel) / "vmcore.elf")
            assert not convert_dump(src, out, ConvertOptions(31, codec, fmt, 2)).write.incomplete
            src.close()
            made[key] = out
        return made[key]

    return get


def _our_dmesg(path: Path) -> str:
    dump = open_dump(path)
    try:
        return format_dmesg(get_printk_records(open_kernel_memory(dump), dump.vmcoreinfo_or_none()))  # type: ignore[arg-type]
    finally:
        dump.close()


def _crash(vmlinux: Path, dump: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    cmds = workdir / "cmds"
    cmds.write_text("bt\nlog\nquit\n")
    return subprocess.run(["crash", "-s", str(vmlinux), str(dump), "-i", str(cmds)], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


_REFERENCE_OK: dict[str, bool] = {}


@pytest.mark.skipif(shutil.which("crash") is None, reason="crash not installed")
@pytest.mark.parametrize(("kind", "kernel"), KERNELS)
@pytest.mark.parametrize(("fmt", "codec"), CRASH_OUTPUTS)
def test_crash_reads_log_and_backtrace(converted: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
                                       lab_crash: Callable[..., Path], tmp_path: Path, kind: str, kernel: str,
                                       fmt: str, codec: str) -> None:
    vmlinux = lab_vmlinux_dbg(kernel)
    if kernel not in _REFERENCE_OK:  # can this crash read QEMU's own dump of the kernel at all?
        _REFERENCE_OK[kernel] = "PID:" in _crash(vmlinux, lab_crash(kind, kernel) / "vmcore.elf", tmp_path).stdout
    if not _REFERENCE_OK[kernel]:
        pytest.skip(f"crash 8.0.2 cannot open QEMU's own dump of {kernel} either (too old for its modules)")
    dump = converted(kind, kernel, fmt, codec)
    run = _crash(vmlinux, dump, tmp_path)
    text = run.stdout
    assert "PID:" in text and "COMMAND:" in text, run.stdout[-2000:] + run.stderr[-2000:]
    crash_fn = "sysrq_handle_crash" if kind == "sysrq" else "kcrash_test"
    assert crash_fn in text
    log_lines = [line for line in text.splitlines() if line.startswith("[")]
    ours = _our_dmesg(dump).splitlines()
    assert len(log_lines) > 300
    # crash prints the same records; compare the first line of each (crash folds continuation lines)
    first = {line for line in ours if line.startswith("[")}
    assert sum(line in first for line in log_lines) > 0.95 * len(log_lines)
    assert "Kernel panic - not syncing" in text


@pytest.mark.skipif(shutil.which("makedumpfile") is None, reason="makedumpfile not installed")
@pytest.mark.parametrize(("kind", "kernel"), KERNELS)
@pytest.mark.parametrize(("fmt", "codec"), MDF_OUTPUTS)
def test_makedumpfile_dump_dmesg(converted: Callable[..., Path], tmp_path: Path, kind: str, kernel: str,
                                 fmt: str, codec: str) -> None:
    dump = converted(kind, kernel, fmt, codec)
    out = tmp_path / "dmesg.txt"
    run = subprocess.run(["makedumpfile", "--dump-dmesg", str(dump), str(out)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert out.read_text(errors="replace") == _our_dmesg(dump)


@pytest.mark.parametrize(("kind", "kernel"), KERNELS)
@pytest.mark.parametrize(("fmt", "codec"), DRGN_OUTPUTS)
def test_drgn_reads_our_dumps(converted: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
                              lab_crash: Callable[..., Path], kind: str, kernel: str, fmt: str, codec: str) -> None:
    import json

    from drgn.helpers.linux.printk import get_printk_records as drgn_records

    dump = converted(kind, kernel, fmt, codec)
    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64,
                                      drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    prog.set_core_dump(str(dump))
    with contextlib.suppress(drgn.MissingDebugInfoError):
        prog.load_debug_info([str(lab_vmlinux_dbg(kernel))])
    assert prog["init_uts_ns"].name.release.string_().decode() == \
        json.loads((lab_crash(kind, kernel) / "lab.json").read_text())["kernel"]["release"]
    ours = [r.text for r in get_printk_records(open_kernel_memory(open_dump(dump)),
                                               open_dump(dump).vmcoreinfo_or_none())]  # type: ignore[arg-type]
    assert [r.text for r in drgn_records(prog)] == ours
    trace = prog.crashed_thread().stack_trace()
    names = [f.name for f in trace if f.name]
    assert "panic" in names or any("panic" in n for n in names), names
