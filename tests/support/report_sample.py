"""One fixed crash report model (frames, a task row, every section filled) for renderer and CLI tests."""

from __future__ import annotations

from kcrash.model import (
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
)

FRAMES = (
    Frame(0, 0xFFFFFFFF81000010, 0xFFFFC90000013800, "panic", 0x10, None, "panic+0x10/0x3a0", True, "regs"),
    Frame(
        1,
        0xFFFFFFFFC021B009,
        0xFFFFC90000013A68,
        "kcrash_test_do_bug",
        9,
        "kcrash_test",
        "kcrash_test_do_bug+0x9/0x10 [kcrash_test]",
        True,
        "regs",
    ),
    Frame(2, 0xFFFFFFFF81234567, 0xFFFFC90000013A70, "vfs_write", 0x67, None, "vfs_write+0x67/0x450", False, "scan"),
)
ROW = TaskRow(1, 0, 1, 1, 0xFFFF88800425E100, "R", "init", True)


def sample_report() -> CrashReport:
    """A BUG in the lab module on CPU 1, one D-state task, one log line, one module."""
    system = SystemInfo(
        "6.12.117+deb12-amd64",
        "#1 SMP",
        "x86_64",
        "(none)",
        2,
        1,
        4_486_392_927,
        1_795_668_229,
        "G      D    OE     ",
        0x3080,
        222_748_672,
        "vmcore.elf",
    )
    verdict = Verdict(
        "Kernel panic - not syncing: Fatal exception",
        "kernel BUG in kcrash_test_do_bug",
        "BUG",
        "kcrash_test_do_bug",
        "backtrace",
        "kcrash_test_do_bug",
        "kcrash_test_do_bug",
    )
    context = CrashingContext(
        1,
        1,
        "init",
        ROW.task,
        FRAMES[1].pc,
        FRAMES[1].text,
        FRAMES[1].sp,
        (("rip", FRAMES[1].pc), ("rsp", FRAMES[1].sp), ("rax", 1)),
        "pt_regs",
    )
    blocked = TaskTrace(
        TaskRow(10, 2, 10, 0, 0xFFFF888004400000, "D", "kworker/0:1", False), Trace(FRAMES[2:], "no ORC entry for 0x1")
    )
    return CrashReport(
        system,
        verdict,
        context,
        Trace(FRAMES, None),
        (LogLine(7, 4_665_849_420, "T1", "Kernel panic - not syncing: Fatal exception"),),
        (blocked,),
        (ModuleRow("kcrash_test", 0xFFFFFFFFC021B000, 16384, "OE", 73, 1411, None),),
        (),
    )
