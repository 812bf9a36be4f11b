"""CLI: kcrash sys/bt/ps/log/mod/report in-process through kcrash.cli.main, with the dump and the
triage replaced by fixed models (the real thing is tests/lab/test_report_lab.py): text, --json, the
arguments reaching triage, and bad input as one error line with a non-zero exit."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kcrash.analysis import backtrace, triage
from kcrash.analysis.backtrace import BacktraceOptions
from kcrash.cli import analyze, main
from kcrash.errors import MissingDebugInfoError, ValidationError
from kcrash.helpers.linux.printk import PrintkLog, PrintkRecord
from kcrash.model import (
    ExceptionFrame,
    FrameDetail,
    SectionNote,
    StackWord,
    TaskRow,
    TaskTraceDetail,
    Trace,
)
from support.report_sample import FRAMES, ROW
from support.report_sample import sample_report as _report

TASK = ROW.task


class _Prog:
    closed = False

    def close(self) -> None:
        _Prog.closed = True


@pytest.fixture
def dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "vmcore"
    path.write_bytes(b"not really a dump")
    report = _report()
    _Prog.closed = False
    monkeypatch.setattr("kcrash.analysis.target.open_target", lambda p, cache, orc=True, **kw: _Prog())
    monkeypatch.setattr(analyze, "panic_cpu_or_none", lambda prog: 1)
    monkeypatch.setattr(triage, "system_info", lambda prog, p: report.system)
    monkeypatch.setattr(triage, "build_report", lambda prog, p, log_tail, **options: report)
    monkeypatch.setattr(triage, "task_rows", lambda prog: ((ROW,), "cycle: node 0x1 seen twice after 3 entries"))
    monkeypatch.setattr(triage, "module_rows", lambda prog: report.modules)
    monkeypatch.setattr("kcrash.cli.dump.open_dump", lambda paths, zero_fill=False: _Prog())
    monkeypatch.setattr(
        triage,
        "dump_log",
        lambda handle: PrintkLog(
            [
                PrintkRecord(i, i * 1_500_000_000, f"line {i}".encode(), 0x80000001 if i else 1, 6, 0, 0)
                for i in range(5)
            ],
            0,
        ),
    )
    monkeypatch.setattr(backtrace, "cpu_backtrace_detail", _cpu_detail)
    monkeypatch.setattr(
        backtrace, "cpu_backtrace_details", lambda prog, options: tuple(_cpu_detail(prog, c, options) for c in (0, 1))
    )
    monkeypatch.setattr(triage, "task_by_pid_or_address_or_none", _task_by_pid_or_address)
    monkeypatch.setattr(
        backtrace,
        "task_backtrace_detail",
        lambda prog, task, options: TaskTraceDetail(
            TaskRow(42, 1, 42, 0, TASK, "D", "sleeper", False), Trace(FRAMES[2:], None), (), None
        ),
    )
    return path


def _task_by_pid_or_address(prog: object, value: int) -> int | None:
    if value == TASK + 0x40:
        raise ValidationError(f"{value:#x} is not a task (not on the task list)")
    return value if value in (42, TASK) else None


def _cpu_detail(prog: object, cpu: int, options: BacktraceOptions) -> TaskTraceDetail:
    # frame 1 of FRAMES is an exception's pt_regs frame, the walk leaves the IRQ stack after it;
    # words only when asked for (-f/-F), symbols with -F
    words = (
        (
            StackWord(FRAMES[1].sp, 0x1234, "vfs_write+0x67/0x450" if options.symbolic else None),
            StackWord(FRAMES[1].sp + 8, 0xFFFF888000001000, None, "kmalloc-64" if options.symbolic else None),
            StackWord(FRAMES[1].sp + 16, 0x2A),
        )
        if options.words or options.symbolic
        else ()
    )
    regs = (("rip", FRAMES[1].pc), ("rsp", FRAMES[1].sp), ("eflags", 0x246), ("rax", 1), ("cs", 0x10), ("ss", 0x18))
    details = (
        FrameDetail(0, "task 1", None, (), None),
        FrameDetail(
            1, "IRQ 1", ExceptionFrame(FRAMES[1].sp - 0xA8, "pt_regs", regs, FRAMES[1].text, False), words, "IRQ stack"
        ),
    )
    user = ExceptionFrame(0xFFFFC90000013F58, "pt_regs", (("rip", 0x401000), ("cs", 0x33)), "0x401000", True)
    return TaskTraceDetail(
        TaskRow(cpu, 0, cpu, cpu, TASK + cpu, "R", f"cpu{cpu}", True), Trace(FRAMES, None), details, user
    )


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys: pytest.CaptureFixture[str], *args: object) -> Any:
    code, out, err = _run(capsys, *args, "--json")
    assert (code, err) == (0, "")
    return json.loads(out)


def test_sys(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "sys", dump)
    assert code == 0 and "RELEASE: 6.12.117+deb12-amd64" in out and "PANIC CPU: 1" in out
    assert _json(capsys, "sys", dump)["taint_mask"] == "0x3080"  # masks are hex strings
    assert _Prog.closed


def test_bt_default_is_the_panic_cpu(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "bt", dump)
    assert code == 0
    assert out.splitlines()[0] == f'PID: 1       TASK: {TASK + 1:016x}  CPU: 1   COMMAND: "cpu1"'
    assert " #2  [ffffc90000013a70] ? vfs_write+0x67/0x450" in out.splitlines()
    assert [e["task"]["cpu"] for e in _json(capsys, "bt", "-a", dump)] == [0, 1]


@pytest.mark.parametrize("target", ["42", f"{TASK:#x}", f"{TASK:x}"])
def test_bt_of_a_pid_or_task(dump: Path, capsys: pytest.CaptureFixture[str], target: str) -> None:
    data = _json(capsys, "bt", dump, target)
    assert [(e["task"]["pid"], len(e["trace"]["frames"])) for e in data] == [(42, 1)]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("7", "no task with pid 7"),
        (f"{TASK + 0x40:#x}", "is not a task (not on the task list)"),
        ("zz", "is neither a PID (decimal) nor a task address"),
        ("0xq", "is not an address"),
        ("12345678901234567", "is neither"),
    ],
)
def test_bt_of_a_bad_target(dump: Path, capsys: pytest.CaptureFixture[str], target: str, message: str) -> None:
    code, out, err = _run(capsys, "bt", dump, target)
    assert code != 0 and out == "" and message in err and "Traceback" not in err


def test_bt_exception_frames_and_stack_switches(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "bt", dump)
    lines = out.splitlines()
    assert code == 0 and "    [exception RIP: " + FRAMES[1].text + "]" in lines
    assert f"    RIP: {FRAMES[1].pc:016x}  RSP: {FRAMES[1].sp:016x}  RFLAGS: 00000246" in lines
    assert "    RAX: 0000000000000001" in lines and "    CS: 0010  SS: 0018" in lines
    mark = lines.index("--- <IRQ stack> ---")
    assert lines[mark - 1] == "    CS: 0010  SS: 0018" and lines[mark + 1].startswith(" #2  ")
    assert lines[-2:] == ["    RIP: 0000000000401000", "    CS: 0033"]  # the user registers end the stack
    assert not any(line.startswith(f"    {FRAMES[1].sp:016x}:") for line in lines)  # no words without -f
    entry = _json(capsys, "bt", dump)[0]
    assert entry["frames"][1]["leaves"] == "IRQ stack" and entry["user_registers"]["user"] is True
    assert dict(map(tuple, entry["frames"][1]["exception"]["registers"]))["rax"] == "0x1"


@pytest.mark.parametrize(
    ("flag", "cells"), [("-f", "0000000000001234 ffff888000001000"), ("-F", "vfs_write+0x67/0x450 [kmalloc-64]")]
)
def test_bt_frame_words(dump: Path, capsys: pytest.CaptureFixture[str], flag: str, cells: str) -> None:
    code, out, _ = _run(capsys, "bt", flag, dump)
    lines = out.splitlines()
    assert code == 0 and f"    {FRAMES[1].sp:016x}: {cells}" in lines
    assert f"    {FRAMES[1].sp + 16:016x}: 000000000000002a" in lines
    words = _json(capsys, "bt", flag, dump)[0]["frames"][1]["words"]
    assert [w["value"] for w in words] == ["0x1234", "0xffff888000001000", "0x2a"]


def test_bt_lines_without_debuginfo_is_an_error(
    dump: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(*args: object, **kwargs: object) -> None:
        raise MissingDebugInfoError("no vmlinux with build-id 1234 found")

    monkeypatch.setattr("kcrash.analysis.sources.open_kernel_symbolizer", missing)
    code, out, err = _run(capsys, "bt", "-l", dump)
    assert code != 0 and out == "" and "bt -l needs debug information" in err and "Traceback" not in err


def test_ps(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "ps", dump)
    assert code == 0 and out.splitlines()[1].split() == [">", "1", "0", "1", f"{TASK:016x}", "R", "init"]
    assert "task list truncated: cycle" in err
    data = _json(capsys, "ps", dump)
    assert data["tasks"][0]["comm"] == "init" and data["truncated"].startswith("cycle")


def test_log(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "log", dump, "--tail", "2")
    assert (code, out.splitlines()) == (0, ["[    4.500000] line 3", "[    6.000000] line 4"])
    code, out, _ = _run(capsys, "log", dump, "--caller", "--tail", "1")
    assert out == "[    6.000000][    C1] line 4\n"
    assert [line["caller"] for line in _json(capsys, "log", dump)] == ["T1", "C1", "C1", "C1", "C1"]


def test_mod(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "mod", dump)
    assert code == 0 and out.splitlines()[1].split()[:4] == ["kcrash_test", "ffffffffc021b000", "16384", "OE"]
    assert _json(capsys, "mod", dump)[0]["btf_size"] == 1411


def test_report(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "report", dump)
    assert code == 0 and "CRASHING FUNCTION: kcrash_test_do_bug  (from the backtrace)" in out
    assert _json(capsys, "report", dump)["verdict"]["panic_message"].endswith("Fatal exception")


def test_missing_debug_info_is_one_error_line(
    dump: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise MissingDebugInfoError("the dump has no VMCOREINFO, so kallsyms cannot be found")

    monkeypatch.setattr("kcrash.analysis.target.open_target", fail)
    for command in ("sys", "bt", "ps", "mod"):
        code, out, err = _run(capsys, command, dump)
        assert (code, out) == (1, "")
        assert err == "kcrash: error: the dump has no VMCOREINFO, so kallsyms cannot be found\n"
    # the report says what the dump still tells, with the reason as a warning
    bare = dataclasses.replace(_report(), unavailable=(SectionNote("tasks", "no symbols"),))
    monkeypatch.setattr(triage, "build_bare_report", lambda handle, path, reason, log_tail: bare)
    code, out, err = _run(capsys, "report", dump)
    assert code == 0 and "not available: no symbols" in out
    assert err.splitlines() == [
        "kcrash: warning: the dump has no VMCOREINFO, so kallsyms cannot be found",
        "kcrash: warning: the report lacks part of: tasks (the dump is damaged or filtered; each section says why)",
    ]
    # the log needs VMCOREINFO only, not kallsyms
    assert _run(capsys, "log", dump, "--tail", "1")[:2] == (0, "[    6.000000] line 4\n")
    monkeypatch.setattr(triage, "dump_log", fail)
    code, out, err = _run(capsys, "log", dump)
    assert (code, out, err.count("\n")) == (1, "", 1) and err.startswith("kcrash: error: ")


def test_log_warns_of_records_in_missing_pages(
    dump: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        triage, "dump_log", lambda handle: PrintkLog([PrintkRecord(7, 0, b"survivor", None, 6, 0, 0)], 3)
    )
    code, out, err = _run(capsys, "log", dump)
    assert (code, out) == (0, "[    0.000000] survivor\n")
    assert err == "kcrash: warning: 3 log record(s) lie in pages missing from the dump\n"


def test_a_file_that_is_not_a_dump(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"\0" * 4096)
    code, out, err = _run(capsys, "report", path)
    assert code == 1 and out == "" and err.startswith("kcrash: error: ") and err.count("\n") == 1


def test_json_output_does_not_import_rich() -> None:
    # rich (~15 ms to import) is for terminal output only
    code = "import sys; import kcrash.cli.analyze; print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_log_of_a_dump_whose_ring_is_gone(
    dump: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(triage, "dump_log", lambda handle: PrintkLog([], 0, "the printk ring lies in pages missing"))
    code, out, err = _run(capsys, "log", dump)
    assert (code, out) == (0, "")
    assert err == "kcrash: warning: no log record survives: the printk ring lies in pages missing\n"


def test_a_missing_snippet_is_one_warning_line_with_its_reason(capsys: pytest.CaptureFixture[str]) -> None:
    # issue 22: `report --source-dir DIR` without a snippet says why, apart from damaged sections
    from types import SimpleNamespace

    from kcrash.analysis.sources import SNIPPET_NOTE
    from kcrash.cli.analyze import _warn_unavailable
    from kcrash.model import SectionNote

    why = f"{SNIPPET_NOTE}: kcrash_test.c (/b/kcrash_test.c:274) not found under /src"
    _warn_unavailable(SimpleNamespace(unavailable=(SectionNote("context", why),)))  # type: ignore[arg-type]
    assert capsys.readouterr().err == f"kcrash: warning: {why}\n"
    _warn_unavailable(SimpleNamespace(unavailable=(SectionNote("tasks", "task list truncated"),)))  # type: ignore[arg-type]
    assert "the report lacks part of: tasks" in capsys.readouterr().err
