"""The report model is JSON-ready data, and the terminal renderer's output at a fixed width into a
StringIO console (plain: no colour, no box drawing)."""

from __future__ import annotations

import io
import json

from kcrash.model import (
    ExceptionFrame,
    FrameDetail,
    StackWord,
    TaskRow,
    TaskTraceDetail,
    Trace,
    to_dict,
)
from kcrash.report.terminal import make_console, render_backtrace, render_report, render_tasks, render_trace
from support.report_sample import FRAMES, ROW
from support.report_sample import sample_report as _report


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


def test_backtrace_looks_like_crashs_bt_f() -> None:
    regs = (
        ("r15", 0xF),
        ("r14", 0xE),
        ("r13", 0xD),
        ("r12", 0xC),
        ("rbp", 0xB0),
        ("rbx", 0xB),
        ("r11", 0x11),
        ("r10", 0x10),
        ("r9", 9),
        ("r8", 8),
        ("rax", 0xA),
        ("rcx", 0xC0),
        ("rdx", 0xD0),
        ("rsi", 0x51),
        ("rdi", 0xD1),
        ("orig_rax", 0xFFFFFFFFFFFFFFFF),
        ("rip", FRAMES[1].pc),
        ("cs", 0x10),
        ("eflags", 0x10246),
        ("rsp", FRAMES[1].sp),
        ("ss", 0x18),
    )
    words = (
        StackWord(0xFFFFC90000013A68, 0xFFFFFFFF81234567, "vfs_write+0x67/0x450"),
        StackWord(0xFFFFC90000013A70, 0xFFFF888004258000, None, "task_struct"),
        StackWord(0xFFFFC90000013A78, 0x2A),
    )
    user = ExceptionFrame(
        0xFFFFC90000013F58,
        "pt_regs",
        (("rip", 0x401000), ("rsp", 0x7FFD0000), ("eflags", 0x246), ("cs", 0x33), ("ss", 0x2B)),
        "0x401000",
        True,
    )
    entry = TaskTraceDetail(
        ROW,
        Trace(FRAMES, None),
        (
            FrameDetail(0, "IRQ 1", None, (), "IRQ stack"),
            FrameDetail(
                1, "task 1", ExceptionFrame(FRAMES[1].sp - 168, "pt_regs", regs, FRAMES[1].text, False), words, None
            ),
        ),
        user,
    )
    assert _render(render_backtrace, entry).splitlines() == [
        'PID: 1       TASK: ffff88800425e100  CPU: 1   COMMAND: "init"',
        " #0  [ffffc90000013800] panic+0x10/0x3a0",
        "--- <IRQ stack> ---",
        " #1  [ffffc90000013a68] kcrash_test_do_bug+0x9/0x10 [kcrash_test]  <- pt_regs",
        "    [exception RIP: kcrash_test_do_bug+0x9/0x10 [kcrash_test]]",
        "    RIP: ffffffffc021b009  RSP: ffffc90000013a68  RFLAGS: 00010246",
        "    RAX: 000000000000000a  RBX: 000000000000000b  RCX: 00000000000000c0",
        "    RDX: 00000000000000d0  RSI: 0000000000000051  RDI: 00000000000000d1",
        "    RBP: 00000000000000b0   R8: 0000000000000008   R9: 0000000000000009",
        "    R10: 0000000000000010  R11: 0000000000000011  R12: 000000000000000c",
        "    R13: 000000000000000d  R14: 000000000000000e  R15: 000000000000000f",
        "    ORIG_RAX: ffffffffffffffff  CS: 0010  SS: 0018",
        "    ffffc90000013a68: vfs_write+0x67/0x450 [task_struct]",
        "    ffffc90000013a78: 000000000000002a",
        " #2  [ffffc90000013a70] ? vfs_write+0x67/0x450",
        "    RIP: 0000000000401000  RSP: 000000007ffd0000  RFLAGS: 00000246",
        "    CS: 0033  SS: 002b",
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
    for heading in (
        "System",
        "Crashing context",
        "Backtrace of the crashed thread",
        "Log (last 1 lines)",
        "Blocked (D state) tasks: 1",
        "Modules: 1  Tainted: G      D    OE",
    ):
        assert heading in lines
    assert "   UPTIME: 00:00:04" in lines and "     DATE: Thu Nov 26 04:43:49 UTC 2026" in lines
    assert "RIP: kcrash_test_do_bug+0x9/0x10 [kcrash_test]   RSP: ffffc90000013a68   (registers from pt_regs)" in lines
    assert "[    4.665849] Kernel panic - not syncing: Fatal exception" in lines
    assert any(line.startswith("kcrash_test") and "ffffffffc021b000" in line and "OE" in line for line in lines)
    assert "\x1b" not in text


def test_kernel_strings_are_not_turned_into_emoji() -> None:
    # rich replaces ``:name:`` codes in plain strings by default: a task or module named like one
    # must print as it is.
    lines = _render(render_tasks, [TaskRow(7, 2, 7, 0, 0xFFFF888004259840, "S", ":fire:", False)])
    assert lines.splitlines()[1].split() == ["7", "2", "0", "ffff888004259840", "S", ":fire:"]


def test_report_shows_the_oops_header_and_every_cpu() -> None:
    from support.report_cpus_sample import CODE_TEXT, OOPS_TEXTS, with_cpus

    text = _render(render_report, with_cpus(_report()))
    oops = text[text.index("\nOops\n") : text.index("\nSystem\n")]
    assert [line[15:] for line in oops.strip().splitlines()[1:]] == [*OOPS_TEXTS, CODE_TEXT]
    assert "[    3.628621] kernel BUG at /build/kcrash_test.c:146!" in oops
    cpus = text[text.index("Backtraces of every CPU: 2") :]
    assert cpus.index("CPU 1 (panic): PID: 1 ") < cpus.index("CPU 0: PID: 0 ")
    assert "stop_this_cpu+0x77/0xc0" in cpus
