"""The renderers' sample report (tests/unit/report/conftest.py) with the oops header, every CPU's
backtrace, every task's backtrace and the frames' disassembly filled in (issue 18)."""

from __future__ import annotations

import dataclasses

from kcrash import model

OOPS_TEXTS = (
    "kernel BUG at /build/kcrash_test.c:146!",
    "Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
    "CPU: 1 UID: 0 PID: 1 Comm: init Tainted: G           OE      6.12.118+deb12-amd64 #1",
    "Hardware name: QEMU Standard PC (i440FX + PIIX, 1996)",
    "RIP: 0010:kcrash_test_do_bug+0x9/0x10 [kcrash_test]",
)
CODE_TEXT = "Code: f3 0f 1e fa 0f 1f 44 00 00 <0f> 0b 0f 1f 44 00 00 90"
IDLE_FRAME = model.Frame(
    0, 0xFFFFFFFF81A00077, 0xFFFFC90000003FC0, "stop_this_cpu", 0x77, None, "stop_this_cpu+0x77/0xc0", True, "call"
)


def with_cpus(report: model.CrashReport) -> model.CrashReport:
    """``report`` (the renderers' sample) with the issue-18 sections: the oops lines are records 5..10
    of a log whose tail starts at record 4, CPU 1 panicked, CPU 0 idles."""
    lines = tuple(model.LogLine(5 + i, 3_628_621_000 + i * 1000, "T1", text) for i, text in enumerate(OOPS_TEXTS))
    code = model.LogLine(10, 3_631_919_000, "T1", CODE_TEXT)
    log = (
        model.LogLine(4, 3_628_000_000, "T1", "kcrash_test: triggering BUG"),
        *lines,
        code,
        model.LogLine(11, 3_632_000_000, "T1", "RSP: 0018:ffffc90000013a78 EFLAGS: 00000246"),
        model.LogLine(40, 3_646_704_000, "T1", "Kernel panic - not syncing: Fatal exception"),
    )
    oops = model.OopsHeader(lines, code, 5, 40)
    tasks = report.tasks or (model.TaskRow(1, 0, 1, 1, 0xFFFF88800425E100, "R", "init", True),)
    idle = model.TaskRow(0, 0, 0, 0, 0xFFFFFFFF82C10940, "R", "swapper/0", True)
    cpus = (
        model.CpuBacktrace(1, True, tasks[0], report.backtrace, "NT_PRSTATUS"),
        model.CpuBacktrace(0, False, idle, model.Trace((IDLE_FRAME,), None), "NT_PRSTATUS"),
    )
    traces = (
        model.TaskTrace(tasks[0], report.backtrace),
        *(model.TaskTrace(row, model.Trace(report.backtrace.frames[2:], None)) for row in tasks[1:]),
    )
    frames = {f.pc: f for t in (report.backtrace, cpus[1].trace) for f in t.frames}
    disassembly = tuple(
        model.Disassembly(
            pc,
            f.function,
            (
                model.Instruction(pc - 5, "e800000000", f"call {f.function}_callee", False),
                model.Instruction(pc, "0f0b", "ud2" if f.kind == "regs" else "mov eax, 1", True),
            ),
            None,
        )
        for pc, f in sorted(frames.items())
    )
    return dataclasses.replace(
        report, tasks=tasks, oops=oops, log_tail=log, cpus=cpus, task_traces=(*traces,), frame_disassembly=disassembly
    )
