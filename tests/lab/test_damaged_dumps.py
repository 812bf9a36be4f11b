"""Real lab dumps cut short (issue 16): every command still gives what the surviving pages allow, with a
warning naming what is missing, and exit 0 when it printed its main result.

- At 50 % of the file: ``dump info``, ``log`` and ``report`` exit 0 with a warning on every format the
  lab writes (QEMU ELF, QEMU flattened kdump, kcrash's own kdump collection). QEMU's flattened file
  writes most page descriptors late, so half of it holds the first ~8 % of pages only: there the log
  ring itself is gone, ``log`` prints no record and a warning saying so, and the report is the bare one
  (VMCOREINFO, CPU notes, the file), still exit 0.
- The log of a dump with damaged pages in the printk text ring: every record whose descriptor, info and
  text pages survive is recovered, byte for byte as in the whole dump, and only those.
- At 90 % the crashed backtrace survives whenever the pages of its stack do (frames whose module's
  pages are gone come from the stack scan, marked unreliable).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.cli import main
from kcrash.dumps import open_dump
from kcrash.errors import FaultError
from kcrash.helpers.linux.printk import get_printk_log
from kcrash.memory import open_kernel_memory
from support.jsonout import from_hex

pytestmark = pytest.mark.lab

KINDS = [("SYSRQ", "6.1"), ("BUG", "6.12")]
FILES = ["vmcore.elf", "vmcore.kdump", "vmcore.kcrash"]
PAGE = 4096


def _cut(src: Path, dst: Path, fraction: float, length: int | None = None) -> Path:
    length = int(src.stat().st_size * fraction) if length is None else length
    with src.open("rb") as fin, dst.open("wb") as fout:
        while (done := fout.tell()) < length:
            if not os.sendfile(fout.fileno(), fin.fileno(), done, length - done):
                break
            fout.seek(0, os.SEEK_END)
    return dst


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize(("kind", "kernel"), KINDS)
def test_half_a_dump_still_reports(lab_crash: Callable[..., Path], capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, kernel: str,
                                   name: str) -> None:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path / "cache"))
    whole = lab_crash(kind, kernel) / name
    cut = _cut(whole, tmp_path / name, 0.5)
    code, out, err = _run(capsys, "dump", "info", cut, "--json")
    info = from_hex(json.loads(out))
    assert code == 0 and "cut short" in err and err.count("\n") == 1
    assert info["pages"]["lost"] > 0 and info["incomplete"]
    code, out, err = _run(capsys, "log", cut)
    full = _run(capsys, "log", whole)[1].splitlines()
    assert code == 0 and set(out.splitlines()) <= set(full)
    if not out:  # the ring's own pages are gone: the warning says so
        assert err.splitlines()[-1].startswith("kcrash: warning: no log record survives: the printk ring lies")
    code, out, err = _run(capsys, "report", cut, "--json")
    report = from_hex(json.loads(out))
    assert code == 0 and "kcrash: warning: the report lacks part of:" in err
    assert report["unavailable"] and report["system"]["release"] == from_hex(json.loads(
        (whole.parent / "lab.json").read_text()))["kernel"]["release"]


def _record_pages(mem: object, info: object) -> dict[int, set[int]]:
    """seq -> the physical pages of the record's descriptor, info and text (from the whole dump)."""
    from kcrash.helpers.linux import printk

    lay = printk._layout(info)  # type: ignore[arg-type]
    read, translate = mem.read, mem.translate  # type: ignore[attr-defined]
    rb = mem.read_u64(info.get_symbol("prb"))  # type: ignore[attr-defined]
    head = read(rb, max(lay.desc_ring, lay.text_ring) + 64)
    u = printk._u
    count = 1 << u(head, lay.desc_ring + lay.count_bits, 4)
    size = 1 << u(head, lay.text_ring + lay.size_bits, 4)
    descs, infos = u(head, lay.desc_ring + lay.descs, 8), u(head, lay.desc_ring + lay.infos, 8)
    data = u(head, lay.text_ring + lay.data, 8)

    def pages(vaddr: int, n: int) -> set[int]:
        return {translate(a) // PAGE for a in range(vaddr & ~(PAGE - 1), vaddr + max(n, 1), PAGE)}

    out: dict[int, set[int]] = {}
    for index in range(count):
        desc = read(descs + index * lay.prb_desc, lay.prb_desc)
        if u(desc, lay.state_var, 8) >> 62 not in (1, 2):
            continue
        begin = u(desc, lay.text_blk_lpos + lay.lpos_begin, 8)
        if begin & 1:
            continue
        info_at = infos + index * lay.printk_info
        seq = u(read(info_at, lay.printk_info), lay.seq, 8)
        text_len = u(read(info_at, lay.printk_info), lay.text_len, 2)
        nxt = u(desc, lay.text_blk_lpos + lay.lpos_next, 8)
        b = 0 if begin % size > nxt % size else begin % size
        out[seq] = (pages(descs + index * lay.prb_desc, lay.prb_desc) | pages(info_at, lay.printk_info)
                    | pages(data + b, 8 + text_len))
    return out


@pytest.mark.parametrize(("kind", "kernel"), KINDS)
def test_log_with_damaged_ring_pages(lab_crash: Callable[..., Path], tmp_path: Path, kind: str, kernel: str) -> None:
    # kcrash's own kdump file of the crash with three compressed pages of the printk text ring
    # overwritten: those pages are missing, every record not on them is recovered byte for byte.
    whole = lab_crash(kind, kernel) / "vmcore.kcrash"
    dump = open_dump(whole)
    mem, info = open_kernel_memory(dump), dump.vmcoreinfo_or_none()
    assert info is not None
    full = {r.seq: r for r in get_printk_log(mem, info).records}
    record_pages = _record_pages(mem, info)
    assert set(record_pages) == set(full)
    text_pages = sorted({p for ps in record_pages.values() for p in ps if len(ps) >= 1})
    data = bytearray(whole.read_bytes())
    damaged_pfns = []
    for pfn in text_pages[len(text_pages) // 3:]:
        desc = dump._desc(dump._bm2.rank(pfn) - dump._rank_base)  # type: ignore[attr-defined]
        if desc is not None and desc[2] != 0 and len(damaged_pfns) < 3:
            offset, size, _ = desc
            data[offset:offset + size] = bytes((b ^ 0x5A) for b in data[offset:offset + size])
            damaged_pfns.append(pfn)
    dump.close()
    assert len(damaged_pfns) == 3
    cut = tmp_path / "damaged.kdump"
    cut.write_bytes(data)
    damaged = open_dump(cut)
    cmem = open_kernel_memory(damaged)

    def present(pfn: int) -> bool:
        try:
            cmem.read(pfn * PAGE, PAGE, physical=True)
        except FaultError:
            return False
        return True

    assert not any(present(p) for p in damaged_pfns)
    allowed = {seq for seq, pages in record_pages.items() if all(present(p) for p in pages)}
    log = get_printk_log(cmem, info)
    got = {r.seq: r for r in log.records}
    assert 0 < len(got) < len(full)
    assert set(got) == allowed
    assert all(got[seq] == full[seq] for seq in got)
    assert log.missing == len(full) - len(got)
    damaged.close()


@pytest.mark.parametrize("name", ["vmcore.elf", "vmcore.kcrash"])
@pytest.mark.parametrize(("kind", "kernel"), KINDS)
def test_crashed_backtrace_survives_with_its_stack(lab_crash: Callable[..., Path], capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str,
                                                   kernel: str, name: str) -> None:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path / "cache"))
    whole = lab_crash(kind, kernel) / name
    full = from_hex(json.loads(_run(capsys, "bt", whole, "--json")[1]))[0]["trace"]
    sps = [f["sp"] for f in full["frames"]]
    cut = _cut(whole, tmp_path / name, 0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dump = open_dump(cut)
    kmem = open_kernel_memory(dump)
    try:
        stack_present = all(kmem.read(sp & ~(PAGE - 1), PAGE) is not None for sp in sps)
    except FaultError:
        stack_present = False
    dump.close()
    code, out, err = _run(capsys, "bt", cut, "--json")
    assert code == 0 and "cut short" in err
    trace = from_hex(json.loads(out))[0]["trace"]
    if stack_present:  # every return address is still found; frames whose module (struct module, ORC)
        # is missing come from the stack scan, marked unreliable
        pcs = [f["pc"] for f in trace["frames"]]
        assert pcs[0] == full["frames"][0]["pc"] and {f["pc"] for f in full["frames"]} <= set(pcs)
        if all(f["reliable"] for f in trace["frames"]):
            assert pcs == [f["pc"] for f in full["frames"]]
    else:
        assert trace["truncated"]


@pytest.mark.parametrize(("kind", "kernel"), [("BUG", "6.12")])
def test_report_without_usable_orc(lab_crash: Callable[..., Path], capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, kernel: str) -> None:
    # The vmlinux ORC entries overwritten with noise (no layout fits): the report still exits 0, the
    # backtrace is all guesses (unreliable) and says why.
    import random

    from kcrash.types.program import open_program

    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path / "cache"))
    whole = lab_crash(kind, kernel) / "vmcore.elf"
    prog = open_program(whole)
    start = prog.symbol_address("__start_orc_unwind")
    count = (prog.symbol_address("__stop_orc_unwind_ip") - prog.symbol_address("__start_orc_unwind_ip")) // 4
    physical = prog.memory.translate(start)  # type: ignore[attr-defined]
    load = next(p for p in prog.dump.loads() if p.p_paddr <= physical < p.p_paddr + p.p_filesz)  # type: ignore[union-attr]
    prog.close()
    data = bytearray(whole.read_bytes())
    at = load.p_offset + physical - load.p_paddr
    data[at:at + 6 * count] = random.Random(1).randbytes(6 * count)
    damaged = tmp_path / "vmcore.elf"
    damaged.write_bytes(data)
    del data
    code, out, _ = _run(capsys, "report", damaged, "--json")
    assert code == 0
    trace = from_hex(json.loads(out))["backtrace"]
    assert "no usable ORC table" in trace["truncated"] and "fits no known layout" in trace["truncated"]
    assert trace["frames"] and not any(f["reliable"] for f in trace["frames"][1:])
    # the guesses still include the function that crashed (the stack scan finds it)
    lab = json.loads((whole.parent / "lab.json").read_text())
    assert any(f["function"] == lab["crash_function"] for f in trace["frames"])
