"""The report model is JSON-ready data, and the terminal renderer's output at a fixed width into a
StringIO console (plain: no colour, no box drawing)."""

from __future__ import annotations

import io
import json

from kcrash.report.model import (
    CrashingContext,
    CrashReport,
    Frame,
    LogLine,
    ModuleRow,
    SystemInfo,
    TaskRow,
    TaskTrace,
    Trace,
    Verdict,
    to_dict,
)
from kcrash.report.terminal import make_console, render_report, render_tasks, render_trace

FRAMES = (
    Frame(0, 0xFFFFFFFF81000010, 0xFFFFC90000013800, "panic", 0x10, None, "panic+0x10/0x3a0", True, "regs"),
    Frame(1, 0xFFFFFFFFC021B009, 0xFFFFC90000013A68, "kcrash_test_do_bug", 9, "kcrash_test",
          "kcrash_test_do_bug+0x9/0x10 [kcrash_test]", True, "regs"),
    Frame(2, 0xFFFFFFFF81234567, 0xFFFFC90000013A70, "vfs_write", 0x67, None, "vfs_write+0x67/0x450", False, "scan"),
)
ROW = TaskRow(1, 0, 1, 1, 0xFFFF88800425E100, "R", "init", True)


def _report() -> CrashReport:
    system = SystemInfo("6.12.117+deb12-amd64", "#1 SMP", "x86_64", "(none)", 2, 1, 4_486_392_927, 1_795_668_229,
                        "G      D    OE     ", 0x3080, 222_748_672, "vmcore.elf")
    verdict = Verdict("Kernel panic - not syncing: Fatal exception", "kernel BUG in kcrash_test_do_bug", "BUG",
                      "kcrash_test_do_bug", "backtrace", "kcrash_test_do_bug", "kcrash_test_do_bug")
    context = CrashingContext(1, 1, "init", ROW.task, FRAMES[1].pc, FRAMES[1].text, FRAMES[1].sp,
                              (("rip", FRAMES[1].pc), ("rsp", FRAMES[1].sp), ("rax", 1)), "pt_regs")
    blocked = TaskTrace(TaskRow(10, 2, 10, 0, 0xFFFF888004400000, "D", "kworker/0:1", False),
                        Trace(FRAMES[2:], "no ORC entry for 0x1"))
    return CrashReport(system, verdict, context, Trace(FRAMES, None),
                       (LogLine(7, 4_665_849_420, "T1", "Kernel panic - not syncing: Fatal exception"),),
                       (blocked,), (ModuleRow("kcrash_test", 0xFFFFFFFFC021B000, 16384, "OE", 73, 1411, None),), ())


def _render(fn: object, *args: object) -> str:
    out = io.StringIO()
    console = make_console(out, width=100, color=False)
    fn(*args, console)  # type: ignore[operator]
    return out.getvalue()


def test_model_is_json_ready() -> None:
    data = to_dict(_report())
    again = json.loads(json.dumps(data))
    assert again == data
    assert again["verdict"]["crashing_function"] == "kcrash_test_do_bug"
    assert again["backtrace"]["frames"][2]["reliable"] is False
    assert again["context"]["registers"][0] == ["rip", FRAMES[1].pc]


def test_trace_lines_look_like_the_kernels() -> None:
    text = _render(render_trace, Trace(FRAMES, "stopped early"))
    assert text.splitlines() == [
        " #0  [ffffc90000013800] panic+0x10/0x3a0",
        " #1  [ffffc90000013a68] kcrash_test_do_bug+0x9/0x10 [kcrash_test]  <- pt_regs",
        " #2  [ffffc90000013a70] ? vfs_write+0x67/0x450",
        " (stack walk stopped: stopped early)",
    ]


def test_tasks_mark_the_running_ones() -> None:
    lines = _render(render_tasks, [ROW, TaskRow(2, 0, 2, 0, 0xFFFF888004259840, "S", "<b>kthreadd</b>", False)])
    rows = [line.split() for line in lines.splitlines()]
    assert rows[0] == ["PID", "PPID", "CPU", "TASK", "ST", "COMM"]
    assert rows[1] == [">", "1", "0", "1", "ffff88800425e100", "R", "init"]
    assert rows[2] == ["2", "0", "0", "ffff888004259840", "S", "<b>kthreadd</b>"]


def test_report_names_panic_function_and_sections() -> None:
    text = _render(render_report, _report())
    lines = text.splitlines()
    assert lines[0] == "PANIC: Kernel panic - not syncing: Fatal exception"
    assert lines[1] == "TITLE: kernel BUG in kcrash_test_do_bug  (BUG)"
    assert lines[2] == "CRASHING FUNCTION: kcrash_test_do_bug  (from the backtrace)"
    for heading in ("System", "Crashing context", "Backtrace of the crashed thread", "Log (last 1 lines)",
                    "Blocked (D state) tasks: 1", "Modules: 1  Tainted: G      D    OE"):
        assert heading in lines
    assert "   UPTIME: 00:00:04" in lines and "     DATE: Thu Nov 26 04:43:49 UTC 2026" in lines
    assert "RIP: kcrash_test_do_bug+0x9/0x10 [kcrash_test]   RSP: ffffc90000013a68   (registers from pt_regs)" in lines
    assert "[    4.665849] Kernel panic - not syncing: Fatal exception" in lines
    assert any(line.startswith("kcrash_test") and "ffffffffc021b000" in line and "OE" in line for line in lines)
    assert "\x1b" not in text
