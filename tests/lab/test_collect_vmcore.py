"""``kcrash collect vmcore`` as kdump-tools' core collector, against makedumpfile 1.7.2 on the same
``/proc/vmcore``-shaped ELF of a lab crash (1.7.2 cannot read QEMU's own ELF, so the input is our
``convert_to_proc_vmcore`` copy, the layout the kernel's /proc/vmcore has).

On the 6.1 dump the two collectors write the same bytes (-c, -l, uncompressed, and -F restored with
``makedumpfile -R``). On 6.12 makedumpfile 1.7.2 drops slab pages it takes for user data (fixed in
1.7.6; see tests/lab/test_collect_convert.py), so there the check is: every page it keeps we keep, with
the same content, read back by kcrash's reader and by drgn. Also: exit codes, a full disk (a 4 MiB
tmpfs: both exit 1 and flag the dump incomplete, crash 8.0.2 says so of both; what survived reads back),
``--dump-dmesg`` equal to makedumpfile's, and the exact command lines kdump-tools' ``kdump-config
savecore`` runs."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from kcrash.collect.source import DumpPages, dump_pages
from kcrash.dumps import open_dump
from kcrash.dumps.kdump_compressed import KdumpCompressed
from kcrash.dumps.write.elf_vmcore import convert_to_proc_vmcore
from kcrash.errors import FaultError

pytestmark = [pytest.mark.lab, pytest.mark.skipif(shutil.which("makedumpfile") is None,
                                                  reason="makedumpfile not installed")]

KCRASH = str(Path(sys.executable).with_name("kcrash"))
CASES = {"6.1": ("BUG", "6.1", True), "6.12": ("BUG", "6.12", False)}


@pytest.fixture(scope="module")
def proc_vmcore(lab_crash: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    made: dict[str, Path] = {}

    def get(kernel: str) -> Path:
        if kernel not in made:
            out = tmp_path_factory.mktemp(f"vmcore-{kernel}") / "vmcore"
            dump = open_dump(lab_crash(*CASES[kernel]) / "vmcore.elf")
            convert_to_proc_vmcore(dump, out)
            dump.close()
            made[kernel] = out
        return made[kernel]

    return get


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)  # type: ignore[call-overload,no-any-return]


@contextlib.contextmanager
def _pages(path: Path) -> Iterator[DumpPages]:
    dump = open_dump(path)
    pages = dump_pages(dump)
    try:
        yield pages
    finally:
        pages.close()
        dump.close()


@pytest.mark.parametrize("flag", ["-c", "-l", None])
def test_same_bytes_as_makedumpfile_on_61(proc_vmcore: Callable[[str], Path], tmp_path: Path, flag: str | None) -> None:
    src = proc_vmcore("6.1")
    codec = [flag] if flag else []
    ours = _run([KCRASH, "collect", "vmcore", *codec, "-d", "31", str(src), str(tmp_path / "k")])
    theirs = _run(["makedumpfile", *codec, "-d", "31", str(src), str(tmp_path / "m")])
    assert (ours.returncode, theirs.returncode) == (0, 0), ours.stderr + theirs.stdout
    assert "kcrash collect vmcore Completed." in ours.stdout
    assert (tmp_path / "k").read_bytes() == (tmp_path / "m").read_bytes()


def test_flattened_to_a_pipe_restores_to_makedumpfiles_bytes(proc_vmcore: Callable[[str], Path],
                                                             tmp_path: Path) -> None:
    src = proc_vmcore("6.1")
    collector = subprocess.Popen([KCRASH, "collect", "vmcore", "-c", "-d", "31", "-F", str(src)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    restore = _run(["makedumpfile", "-R", str(tmp_path / "restored")], stdin=collector.stdout)
    assert collector.wait(timeout=300) == 0 and restore.returncode == 0, restore.stdout
    assert _run(["makedumpfile", "-c", "-d", "31", str(src), str(tmp_path / "m")]).returncode == 0
    assert (tmp_path / "restored").read_bytes() == (tmp_path / "m").read_bytes()


def test_612_keeps_every_page_makedumpfile_keeps(proc_vmcore: Callable[[str], Path], tmp_path: Path) -> None:
    src = proc_vmcore("6.12")
    assert _run([KCRASH, "collect", "vmcore", "-z", "-d", "31", str(src), str(tmp_path / "k")]).returncode == 0
    assert _run(["makedumpfile", "-l", "-d", "31", str(src), str(tmp_path / "m")]).returncode == 0
    with _pages(tmp_path / "k") as ours, _pages(tmp_path / "m") as theirs, _pages(src) as source:
        assert not (theirs.present & ~ours.present).any()
        extra = int(np.count_nonzero(ours.present & ~theirs.present))
        assert extra < 0.05 * np.count_nonzero(theirs.present)  # the slab pages 1.7.2 drops, no more
        for pfn in np.flatnonzero(theirs.present)[::7]:
            page = source.read_pages(int(pfn), 1)
            assert ours.read_pages(int(pfn), 1) == page == theirs.read_pages(int(pfn), 1)


def test_drgn_reads_the_same_memory_from_both(proc_vmcore: Callable[[str], Path], tmp_path: Path) -> None:
    drgn = pytest.importorskip("drgn")
    src = proc_vmcore("6.1")
    assert _run([KCRASH, "collect", "vmcore", "-c", "-d", "31", str(src), str(tmp_path / "k")]).returncode == 0
    assert _run(["makedumpfile", "-c", "-d", "31", str(src), str(tmp_path / "m")]).returncode == 0
    progs = []
    for name in ("k", "m"):
        prog = drgn.Program()
        prog.set_core_dump(str(tmp_path / name))
        progs.append(prog)
    with _pages(tmp_path / "k") as ours:
        kept = np.flatnonzero(ours.present)
        for pfn in kept[::11]:
            addr = int(pfn) * 4096
            assert progs[0].read(addr, 4096, True) == progs[1].read(addr, 4096, True) == ours.read_pages(int(pfn), 1)
    assert len(kept) > 10_000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_full_disk_leaves_an_incomplete_readable_dump_as_makedumpfile_does(
        proc_vmcore: Callable[[str], Path], small_disk: Path, tmp_path: Path,
        lab_vmlinux_dbg: Callable[[str], Path]) -> None:
    src = proc_vmcore("6.1")
    ours = _run([KCRASH, "collect", "vmcore", "-c", "-d", "31", str(src), str(small_disk / "k")])
    assert ours.returncode == 1 and "INCOMPLETE" in ours.stderr and "Failed." in ours.stdout
    shutil.copy(small_disk / "k", tmp_path / "k")
    (small_disk / "k").unlink()
    theirs = _run(["makedumpfile", "-c", "-d", "31", str(src), str(small_disk / "m")])
    assert theirs.returncode == 1 and "incomplete dumpfile" in theirs.stdout
    for name, path in (("ours", tmp_path / "k"), ("makedumpfile", small_disk / "m")):
        info = _run([KCRASH, "dump", "info", "--json", str(path)])
        assert info.returncode == 0, (name, info.stderr)
        assert "incomplete" in info.stdout and "incomplete" in info.stderr, name
    survived = {name: _survivors(path) for name, path in (("ours", tmp_path / "k"), ("mdf", small_disk / "m"))}
    assert len(survived["ours"]) > 1000 and len(survived["ours"]) > 0.9 * len(survived["mdf"])
    with _pages(src) as source:
        for pfn, page in list(survived["ours"].items())[::3]:
            assert page == source.read_pages(pfn, 1)
    if shutil.which("crash"):  # crash 8.0.2 flags both the same way
        vmlinux = str(lab_vmlinux_dbg("6.1"))
        for path in (tmp_path / "k", small_disk / "m"):
            run = _run(["crash", "-s", vmlinux, str(path)], input="q\n")
            assert "This dumpfile is incomplete." in run.stdout + run.stderr, path
    # the printk ring (at 0xd664000 here) lies past the cut: the log command says why, not a traceback
    log = _run([KCRASH, "log", str(tmp_path / "k")])
    assert log.returncode == 0 and "lost: dump incomplete" in log.stderr, log.stderr


def _survivors(path: Path) -> dict[int, bytes]:
    # pfn -> page of every page the incomplete dump still holds (lost ones raise FaultError)
    dump = open_dump(path)
    assert isinstance(dump, KdumpCompressed) and dump.incomplete
    out = {}
    with _pages(path) as pages:
        for pfn in np.flatnonzero(pages.present):
            with contextlib.suppress(FaultError):
                out[int(pfn)] = dump.read_page(int(pfn))
    dump.close()
    return out


def test_dump_dmesg_equals_makedumpfiles(proc_vmcore: Callable[[str], Path], tmp_path: Path) -> None:
    src = proc_vmcore("6.1")
    ours = _run([KCRASH, "collect", "vmcore", "--dump-dmesg", str(src), str(tmp_path / "k.txt")])
    theirs = _run(["makedumpfile", "--dump-dmesg", str(src), str(tmp_path / "m.txt")])
    assert (ours.returncode, theirs.returncode) == (0, 0), ours.stderr
    text = (tmp_path / "k.txt").read_text()
    assert text == (tmp_path / "m.txt").read_text() and text.count("\n") > 100


def _kdump_tools_env(tmp_path: Path) -> dict[str, str]:
    # kdump-config runs "makedumpfile" from PATH=/bin:/usr/bin:/sbin:/usr/sbin: the drop-in is an
    # executable of that name running kcrash collect vmcore with the arguments as they are.
    shim = tmp_path / "bin" / "makedumpfile"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {KCRASH} collect vmcore "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{shim.parent}:/bin:/usr/bin:/sbin:/usr/sbin"}


def test_the_command_lines_of_kdump_config_savecore(proc_vmcore: Callable[[str], Path], tmp_path: Path) -> None:
    # kdump_save_core and kdump_save_core_to_ssh in kdump-tools' kdump-config, with its default
    # MAKEDUMP_ARGS="-c -d 31" (the ssh path adds -F to MAKEDUMP_ARGS and pipes into "ssh ... dd of=")
    src = proc_vmcore("6.1")
    script = """set -e
vmcore_file="$1"; KDUMP_STAMPDIR="$2"; MAKEDUMP_ARGS="-c -d 31"
KDUMP_CORETEMP="$KDUMP_STAMPDIR/dump-incomplete"; KDUMP_DMESGFILE="$KDUMP_STAMPDIR/dmesg.202612071200"
makedumpfile $MAKEDUMP_ARGS $vmcore_file $KDUMP_CORETEMP
mv $KDUMP_CORETEMP "$KDUMP_STAMPDIR/dump.202612071200"
makedumpfile --dump-dmesg $vmcore_file $KDUMP_DMESGFILE
MAKEDUMP_ARGS="$MAKEDUMP_ARGS -F"
makedumpfile $MAKEDUMP_ARGS $vmcore_file | dd of="$KDUMP_STAMPDIR/flat" status=none
"""
    stamp = tmp_path / "crash"
    stamp.mkdir()
    run = _run(["sh", "-c", script, "kdump-config", str(src), str(stamp)], env=_kdump_tools_env(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert _run(["makedumpfile", "-c", "-d", "31", str(src), str(tmp_path / "m")]).returncode == 0
    assert (stamp / "dump.202612071200").read_bytes() == (tmp_path / "m").read_bytes()
    assert _run(["makedumpfile", "-R", str(tmp_path / "r")], stdin=(stamp / "flat").open("rb")).returncode == 0
    assert (tmp_path / "r").read_bytes() == (tmp_path / "m").read_bytes()
    assert "Kernel panic" in (stamp / "dmesg.202612071200").read_text() or \
        "invalid opcode" in (stamp / "dmesg.202612071200").read_text()
