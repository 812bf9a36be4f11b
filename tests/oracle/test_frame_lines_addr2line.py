"""One rule for a frame's source line (issue 22, item 9), against binutils on the lab's BUG dump of
6.12 (no KASLR: runtime addresses of vmlinux are link-time ones): ``bt --debuginfo``'s lines of every
vmlinux frame equal ``addr2line -f -i`` at the return address minus one for call frames and at the
IP for the interrupted ones (gdb's rule: the call site, not the line after it); and ``decode`` of the
same crash's console log, which works from ``func+off`` alone, gives every frame both show the same
lines as ``bt``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash import model
from kcrash.analysis.backtrace import BacktraceOptions, task_backtrace_detail
from kcrash.analysis.decode import decode_log_text
from kcrash.analysis.sources import annotate_trace, covers, open_kernel_symbolizer
from kcrash.analysis.target import open_target
from kcrash.debuginfo.symbolizer import open_symbolizers
from kcrash.helpers.linux.panic import panic_task_or_none
from kcrash.oops import read_log
from support.addr2line import addr2line

pytestmark = [pytest.mark.lab, pytest.mark.oracle]


@pytest.fixture(scope="module")
def bug(lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
        tmp_path_factory: pytest.TempPathFactory) -> tuple[model.Trace, Path, Path, Path]:
    crash = lab_crash("BUG", "6.12", False)
    module = Path(json.loads((crash / "lab.json").read_text())["module"]["path"])
    vmlinux = lab_vmlinux_dbg("6.12")
    with open_target(crash / "vmcore.kdump", tmp_path_factory.mktemp("cache")) as prog:
        task = panic_task_or_none(prog)
        assert task is not None
        trace = task_backtrace_detail(prog, task, BacktraceOptions()).trace
        symbolizer = open_kernel_symbolizer(prog, [vmlinux, module], cache_dir=None)
        try:
            assert symbolizer.kaslr_offset == 0
            in_vmlinux = {f.index for f in trace.frames
                          if covers(symbolizer, f.pc) and not any(lo <= f.pc < hi for m in symbolizer.modules.values()
                                                                  for lo, hi in m.text_ranges())}
            annotated = annotate_trace(trace, symbolizer)
        finally:
            symbolizer.close()
    frames = tuple(f for f in annotated.frames if f.index in in_vmlinux)
    return model.Trace(frames, None), crash, vmlinux, module


def _lines(source: tuple[model.SourceLine, ...]) -> list[tuple[str, str]]:
    return [(s.function, f"{s.file}:{s.line}") for s in source]


def test_bt_lines_are_addr2line_at_the_call_site(bug: tuple[model.Trace, Path, Path, Path]) -> None:
    trace, _, vmlinux, _ = bug
    assert sum(f.kind == "call" for f in trace.frames) >= 5  # the interrupted frame is the module's
    at = [f.pc - 1 if f.kind in ("call", "scan") else f.pc for f in trace.frames]
    theirs = addr2line(vmlinux, at)
    for frame, answer in zip(trace.frames, theirs, strict=True):
        answer = [(fn, where.split(" (discriminator")[0].removeprefix("/build/reproducible-path/")) for fn, where
                  in answer]
        ours = _lines(frame.source)
        assert [fn for fn, _ in ours] == [fn for fn, _ in answer], frame.text
        assert [w.rsplit(":", 1)[1] for _, w in ours] == [w.rsplit(":", 1)[1] for _, w in answer], frame.text
    # the rule matters on this trace: some return address is on another line than its call
    after = addr2line(vmlinux, [f.pc for f in trace.frames if f.kind == "call"])
    before = addr2line(vmlinux, [f.pc - 1 for f in trace.frames if f.kind == "call"])
    assert any(a[-1][1] != b[-1][1] for a, b in zip(after, before, strict=True))


def test_decode_gives_the_frames_bt_gives_the_same_lines(bug: tuple[model.Trace, Path, Path, Path]) -> None:
    trace, crash, vmlinux, module = bug
    symbolizer = open_symbolizers(vmlinux, {"kcrash_test": (module, 0)}, cache_dir=None)
    try:
        decoded = decode_log_text(read_log(crash / "console.log"), symbolizer)
    finally:
        symbolizer.close()
    by_text = {f.text: f for f in trace.frames if f.kind == "call"}
    compared = 0
    for key, frame in decoded.frames.items():
        theirs = by_text.get(key)
        if theirs is None or frame.interrupted:
            continue
        assert [(loc.function, loc.line) for loc in frame.locations] == \
            [(s.function, s.line) for s in theirs.source], key
        compared += 1
    assert compared >= 3
