"""A synthetic crash report with every section filled, for the renderer tests (terminal snapshot,
HTML, JSON). Task names include the lab's hostile ones: markup characters and non-UTF-8 bytes."""

from __future__ import annotations

import pytest

from kcrash import model

HOSTILE = "<i>x</i>&\"'"
#: b"nu\xff\xfe\x01<b>" decoded the way triage decodes kernel strings
NONUTF8 = b"nu\xff\xfe\x01<b>".decode("utf-8", "backslashreplace")

FRAMES = (
    model.Frame(0, 0xFFFFFFFF81000010, 0xFFFFC90000013800, "panic", 0x10, None, "panic+0x10/0x3a0", True, "regs"),
    model.Frame(
        1,
        0xFFFFFFFFC021B009,
        0xFFFFC90000013A68,
        "kcrash_test_do_bug",
        9,
        "kcrash_test",
        "kcrash_test_do_bug+0x9/0x10 [kcrash_test]",
        True,
        "regs",
        (
            model.SourceLine("kcrash_test_inner", "/build/kcrash_test.c", 120, True),
            model.SourceLine("kcrash_test_do_bug", "/build/kcrash_test.c", 131, False),
        ),
    ),
    model.Frame(
        2, 0xFFFFFFFF81234567, 0xFFFFC90000013A70, "vfs_write", 0x67, None, "vfs_write+0x67/0x450", False, "scan"
    ),
)


def sample_report() -> model.CrashReport:
    """Every section of the model, with fixed values."""
    rows = (
        model.TaskRow(1, 0, 1, 1, 0xFFFF88800425E100, "R", "init", True),
        model.TaskRow(10, 2, 10, 0, 0xFFFF888004400000, "D", "kworker/0:1", False),
        model.TaskRow(77, 2, 77, 0, 0xFFFF888004410000, "S", HOSTILE, False),
        model.TaskRow(78, 2, 78, 1, 0xFFFF888004420000, "S", NONUTF8, False),
    )
    system = model.SystemInfo(
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
    verdict = model.Verdict(
        "Kernel panic - not syncing: Fatal exception",
        "kernel BUG in kcrash_test_do_bug",
        "BUG",
        "kcrash_test_do_bug",
        "backtrace",
        "kcrash_test_do_bug",
        "kcrash_test_do_bug",
        "kc1-0123456789abcdef",
        False,
    )
    context = model.CrashingContext(
        1,
        1,
        "init",
        rows[0].task,
        FRAMES[1].pc,
        FRAMES[1].text,
        FRAMES[1].sp,
        (("rip", FRAMES[1].pc), ("rsp", FRAMES[1].sp), ("rax", 1), ("rbx", 2), ("rcx", 3)),
        "pt_regs",
        FRAMES[1].source,
        model.SourceSnippet("/build/kcrash_test.c", 120, 119, ("{", "\tBUG();  /* <here> */", "}")),
    )
    dis = model.Disassembly(
        FRAMES[1].pc,
        "kcrash_test_do_bug",
        (
            model.Instruction(0xFFFFFFFFC021B000, "0f1f440000", "nop dword ptr [rax + rax]", False),
            model.Instruction(0xFFFFFFFFC021B005, "90", "nop", False),
            model.Instruction(0xFFFFFFFFC021B009, "0f0b", "ud2", True),
        ),
        None,
    )
    blocked = model.TaskTrace(rows[1], model.Trace(FRAMES[2:], "no ORC entry for 0x1"))
    memory = model.MemorySummary(
        222_748_672,
        180_000_000,
        2_000_000,
        300_000,
        9_000_000,
        7_000_000,
        150,
        (
            model.SlabCache("inode_cache", 632, 9936, 828, 6_782_976),
            model.SlabCache("kcrash_test_cache", 64, 128, 2, 8192),
        ),
        None,
    )
    regions = model.TaskMemory(
        1,
        "init",
        False,
        (
            model.MemoryRegion(0x400000, 0x401000, 0x71, "r--p", 0, "/bin/busybox"),
            model.MemoryRegion(0x401000, 0x585000, 0x75, "r-xp", 0x1000, "/bin/<b>busy</b>"),
            model.MemoryRegion(0x18D0A000, 0x18D2C000, 0x100073, "rw-p", 0, "[heap]"),
        ),
        None,
    )
    dump = model.DumpMetadata(
        "vmcore.elf", "elf64 (qemu)", ("raw",), None, 268_702_891, 1_795_669_198, "file mtime", False, 65600, 65600
    )
    return model.CrashReport(
        system,
        verdict,
        context,
        model.Trace(FRAMES, None),
        (
            model.LogLine(7, 4_665_849_420, "T1", "Kernel panic - not syncing: Fatal exception"),
            model.LogLine(8, 4_665_900_000, "T1", "<script>alert(1)</script>"),
        ),
        (blocked,),
        (model.ModuleRow("kcrash_test", 0xFFFFFFFFC021B000, 16384, "OE", 73, 1411, None),),
        ("a note",),
        dis,
        rows,
        (model.TaskStateCount("S", 2), model.TaskStateCount("D", 1), model.TaskStateCount("R", 1)),
        (model.Taint("O", "out-of-tree module"), model.Taint("E", "unsigned module")),
        memory,
        regions,
        dump,
    )


@pytest.fixture
def report() -> model.CrashReport:
    return sample_report()
