"""Which facts survive a dump cut short, against what its surviving pages allow (issue #16).

Usage: .venv/bin/python bench/survival.py CRASH_DIR... [--cuts 20] [--formats vmcore.elf,vmcore.kdump]

For every lab crash directory (``kcrash lab crash`` output) and file format, the file is cut at
``--cuts`` evenly spaced lengths (5 % … 100 %). For each cut the table gives:

- ``pages``: the share of the whole dump's pages that still read;
- ``log``: records recovered / records whose descriptor, info and text pages all still read / all;
- ``tasks``: task rows recovered (``ps``) / tasks whose ``task_struct`` pages still read / all;
- ``bt``: return addresses of the crashed CPU's whole backtrace still found / all, and whether
  every stack page of that backtrace still reads;
- ``report``: the exit status of ``kcrash report`` and the sections it marks unavailable.

"Still reads" is checked on the cut file page by page; page addresses come from the whole dump.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

PAGE = 4096


def cut_copy(src: Path, dst: Path, length: int) -> Path:
    """Write the first ``length`` bytes of ``src`` to ``dst`` (a dump cut short)."""
    with src.open("rb") as fin, dst.open("wb") as fout:
        while fout.tell() < length and os.sendfile(fout.fileno(), fin.fileno(), fout.tell(), length - fout.tell()):
            fout.seek(0, os.SEEK_END)
    return dst


def _page_reader(path: Path):  # type: ignore[no-untyped-def]
    from kcrash.dumps import open_dump
    from kcrash.errors import FaultError, KcrashError
    from kcrash.memory import SegmentMap

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mem = SegmentMap(open_dump(path).segments())
    except KcrashError:
        return lambda pfn: False

    def present(pfn: int) -> bool:
        try:
            mem.read(pfn * PAGE, PAGE, physical=True)
        except FaultError:
            return False
        return True

    return present


def _whole_facts(path: Path) -> dict[str, object]:
    """Records and their pages, tasks and their pages, the crashed trace and its stack pages."""
    from kcrash.analysis import triage
    from kcrash.analysis.target import open_target
    from kcrash.helpers.linux.panic import panic_cpu_or_none
    from kcrash.helpers.linux.printk import get_printk_log

    prog = open_target(str(path), Path(tempfile.mkdtemp()))
    mem = prog.memory
    info = prog.vmcoreinfo
    assert info is not None
    records = get_printk_log(mem, info).records
    pages_of = _record_pages(mem, info)
    rows, _ = triage.task_rows(prog)
    size = prog.type("struct task_struct").sizeof()
    tasks = {r.task: {mem.translate(a) // PAGE for a in range(r.task & ~(PAGE - 1), r.task + size, PAGE)}
             for r in rows}
    trace = triage.cpu_backtrace(prog, panic_cpu_or_none(prog) or 0).trace
    stack = {mem.translate(f.sp & ~(PAGE - 1)) // PAGE for f in trace.frames}
    facts = {"records": {r.seq for r in records}, "record_pages": pages_of, "tasks": tasks,
             "pcs": [f.pc for f in trace.frames], "stack_pages": stack}
    prog.close()
    return facts


def _record_pages(mem, info) -> dict[int, set[int]]:  # type: ignore[no-untyped-def]
    from kcrash.helpers.linux import printk

    lay, u = printk._layout(info), printk._u
    head = mem.read(mem.read_u64(info.get_symbol("prb")), max(lay.desc_ring, lay.text_ring) + 64)
    count = 1 << u(head, lay.desc_ring + lay.count_bits, 4)
    size = 1 << u(head, lay.text_ring + lay.size_bits, 4)
    descs, infos = u(head, lay.desc_ring + lay.descs, 8), u(head, lay.desc_ring + lay.infos, 8)
    data = u(head, lay.text_ring + lay.data, 8)

    def pages(vaddr: int, n: int) -> set[int]:
        return {mem.translate(a) // PAGE for a in range(vaddr & ~(PAGE - 1), vaddr + max(n, 1), PAGE)}

    out: dict[int, set[int]] = {}
    for index in range(count):
        desc = mem.read(descs + index * lay.prb_desc, lay.prb_desc)
        begin = u(desc, lay.text_blk_lpos + lay.lpos_begin, 8)
        if u(desc, lay.state_var, 8) >> 62 not in (1, 2) or begin & 1:
            continue
        inf = mem.read(infos + index * lay.printk_info, lay.printk_info)
        nxt = u(desc, lay.text_blk_lpos + lay.lpos_next, 8)
        b = 0 if begin % size > nxt % size else begin % size
        out[u(inf, lay.seq, 8)] = (pages(descs + index * lay.prb_desc, lay.prb_desc)
                                   | pages(infos + index * lay.printk_info, lay.printk_info)
                                   | pages(data + b, 8 + u(inf, lay.text_len, 2)))
    return out


def _kcrash(*args: str) -> tuple[int, object]:
    proc = subprocess.run([sys.executable, "-m", "kcrash", *args, "--json"], capture_output=True, text=True,
                          timeout=300, check=False)
    try:
        return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        return proc.returncode, None


def _row(whole: dict[str, object], cut: Path, npages: int, pfns: list[int]) -> dict[str, object]:
    present = _page_reader(cut)
    alive = sum(1 for p in pfns if present(p))
    record_pages: dict[int, set[int]] = whole["record_pages"]  # type: ignore[assignment]
    tasks: dict[int, set[int]] = whole["tasks"]  # type: ignore[assignment]
    code, log = _kcrash("log", str(cut))
    code_ps, ps = _kcrash("ps", str(cut))
    code_bt, bt = _kcrash("bt", str(cut))
    code_rep, rep = _kcrash("report", str(cut))
    # --json writes addresses as "0x..." strings (README, "JSON output")
    pcs = {int(f["pc"], 16) for f in bt[0]["trace"]["frames"]} if code_bt == 0 and bt else set()
    return {
        "pages": alive / npages,
        "log": (len(log) if code == 0 and log else 0,
                sum(1 for ps_ in record_pages.values() if all(present(p) for p in ps_)), len(record_pages)),
        "tasks": (len(ps["tasks"]) if code_ps == 0 and ps else 0,
                  sum(1 for ps_ in tasks.values() if all(present(p) for p in ps_)), len(tasks)),
        "bt": (sum(1 for pc in whole["pcs"] if pc in pcs), len(whole["pcs"]),  # type: ignore[attr-defined]
               all(present(p) for p in whole["stack_pages"])),  # type: ignore[attr-defined]
        "report": (code_rep, sorted({n["section"] for n in rep["unavailable"]}) if rep else None),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("crashes", nargs="+", type=Path)
    ap.add_argument("--cuts", type=int, default=20)
    ap.add_argument("--formats", default="vmcore.elf,vmcore.kdump")
    args = ap.parse_args()
    print("| crash | file | cut | pages | log (got/allowed/all) | tasks (got/allowed/all) | "
          "bt return addresses (got/all, stack pages present) | report (exit, sections unavailable) |")
    print("|---|---|---|---|---|---|---|---|")
    for crash in args.crashes:
        lab = json.loads((crash / "lab.json").read_text())
        name = f"{lab['kind']} {lab['kernel']['flavour']}"
        for fmt in args.formats.split(","):
            whole_path = crash / fmt
            whole = _whole_facts(whole_path)
            from kcrash.dumps import open_dump
            from kcrash.memory import SegmentMap

            pfns = [a // PAGE for s, e in SegmentMap(open_dump(whole_path).segments()).ranges(physical=True)
                    for a in range(s, e, PAGE)]
            size = whole_path.stat().st_size
            with tempfile.TemporaryDirectory() as tmp:
                for i in range(1, args.cuts + 1):
                    fraction = i / args.cuts
                    cut = cut_copy(whole_path, Path(tmp) / fmt, int(size * fraction))
                    r = _row(whole, cut, len(pfns), pfns)
                    log, tasks, bt, rep = r["log"], r["tasks"], r["bt"], r["report"]
                    print(f"| {name} | {fmt} | {fraction:.0%} | {r['pages']:.0%} | {log[0]}/{log[1]}/{log[2]} | "
                          f"{tasks[0]}/{tasks[1]}/{tasks[2]} | {bt[0]}/{bt[1]}, {'yes' if bt[2] else 'no'} | "
                          f"{rep[0]}, {', '.join(rep[1]) if rep[1] else '-'} |", flush=True)


if __name__ == "__main__":
    main()
