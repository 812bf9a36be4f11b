"""The crashing-function rules of triage on synthetic traces (the shapes seen on real lab dumps):
oopses and lockups blame the pt_regs frame after panic(), explicit panics the caller of
panic()/nmi_panic(), hung tasks what the blocked tasks sleep in; the log parser's answer is kept and
used when the trace gives none. And ps rows of synthetic tasks."""

from __future__ import annotations

import pytest

from kcrash.analysis.triage import blocked_function, interrupted_function, panic_caller, task_row, verdict
from kcrash.errors import FaultError
from kcrash.helpers.linux.printk import PrintkRecord
from kcrash.model import Frame, TaskRow, TaskTrace, Trace
from support.task_kernel import END, Kernel


def _frames(*spec: str) -> tuple[Frame, ...]:
    # "name" is a call frame, "name!" a pt_regs frame, "?name" an unreliable one
    out = []
    for i, text in enumerate(spec):
        name = text.strip("!?")
        kind = "regs" if text.endswith("!") or i == 0 else ("scan" if text.startswith("?") else "call")
        out.append(Frame(i, 0x1000 + i, 0x2000 + i, name, 4, None, f"{name}+0x4/0x10", not text.startswith("?"), kind))
    return tuple(out)


PANIC_TOP = ("pvpanic_send_event!", "pvpanic_panic_notify", "notifier_call_chain", "panic")
OOPS = _frames(
    *PANIC_TOP,
    "oops_end",
    "do_trap",
    "exc_invalid_op",
    "asm_exc_invalid_op",
    "kcrash_test_do_bug!",
    "kcrash_test_level2",
    "vfs_write",
)
SPIN = _frames(
    *PANIC_TOP,
    "watchdog_timer_fn",
    "hrtimer_interrupt",
    "asm_sysvec_apic_timer_interrupt",
    "native_queued_spin_lock_slowpath!",
    "_raw_spin_lock",
    "kcrash_test_do_spinlockup",
    "vfs_write",
)
NMI = _frames(*PANIC_TOP, "nmi_panic", "unknown_nmi_error", "exc_nmi", "end_repeat_nmi", "default_idle!", "do_idle")
SYSRQ = _frames(*PANIC_TOP, "sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger")
HUNG = _frames(*PANIC_TOP, "watchdog", "kthread", "ret_from_fork")
SLEEPER = _frames(
    "__schedule",
    "schedule",
    "schedule_preempt_disabled",
    "__mutex_lock.constprop.0",
    "?__pfx_kcrash_test_abba_thread_b",
    "kcrash_test_abba_lock",
    "kcrash_test_abba_thread_a",
)


def _record(seq: int, text: str) -> PrintkRecord:
    return PrintkRecord(seq, seq * 1_000_000, text.encode(), None, 0, 0, 0)


def _row(pid: int) -> TaskRow:
    return TaskRow(pid, 2, pid, 0, 0xFFFF888000001000 + pid, "D", f"t{pid}", False)


def test_interrupted_function_is_the_pt_regs_frame_after_panic() -> None:
    assert interrupted_function(OOPS) == "kcrash_test_do_bug"
    # spinlock slow paths are skipped: the lock's caller is blamed
    assert interrupted_function(SPIN) == "kcrash_test_do_spinlockup"
    assert interrupted_function(SYSRQ) is None


def test_panic_caller_skips_panic_machinery() -> None:
    assert panic_caller(SYSRQ) == "sysrq_handle_crash"
    assert panic_caller(NMI) == "unknown_nmi_error"
    assert panic_caller(_frames("schedule", "vfs_write")) is None


def test_blocked_function_skips_scheduler_locks_and_guesses() -> None:
    assert blocked_function([Trace(SLEEPER, None)]) == "kcrash_test_abba_lock"
    assert blocked_function([Trace(_frames("__schedule", "schedule"), None)]) is None


def test_verdict_by_panic_message() -> None:
    v = verdict("Kernel panic - not syncing: Fatal exception", OOPS, [], ())
    assert (v.crashing_function, v.source, v.log_function) == ("kcrash_test_do_bug", "backtrace", None)
    v = verdict("Kernel panic - not syncing: softlockup: hung tasks", SPIN, [], ())
    assert v.crashing_function == "kcrash_test_do_spinlockup"
    v = verdict("Kernel panic - not syncing: NMI: Not continuing", NMI, [], ())
    assert v.crashing_function == "unknown_nmi_error"


def test_hung_task_blames_the_named_blocked_task_first() -> None:
    other = TaskTrace(
        _row(7), Trace(_frames("__schedule", "schedule", "io_schedule", "folio_wait_bit", "filemap_fault"), None)
    )
    named = TaskTrace(_row(164), Trace(SLEEPER, None))
    records = [_record(1, "INFO: task kcrash_abba_a:164 blocked for more than 10 seconds.")]
    v = verdict("Kernel panic - not syncing: hung_task: blocked tasks", HUNG, records, (other, named))
    assert v.crashing_function == "kcrash_test_abba_lock"
    v = verdict("Kernel panic - not syncing: hung_task: blocked tasks", HUNG, [], (other, named))
    assert v.crashing_function == "filemap_fault"


def test_the_log_answers_when_the_trace_cannot() -> None:
    log = [
        "kernel BUG at drivers/x.c:12!",
        "invalid opcode: 0000 [#1] SMP NOPTI",
        "CPU: 1 PID: 1 Comm: init Tainted: G           OE      6.1.0 #1",
        "RIP: 0010:kcrash_test_do_bug+0x9/0x10 [kcrash_test]",
        "Call Trace:",
        " <TASK>",
        " kcrash_test_level2+0x65/0x80 [kcrash_test]",
        " </TASK>",
        "Kernel panic - not syncing: Fatal exception",
    ]
    records = [_record(i, line) for i, line in enumerate(log)]
    v = verdict("Kernel panic - not syncing: Fatal exception", (), records, ())
    assert (v.crashing_function, v.source, v.trace_function) == ("kcrash_test_do_bug", "log", None)
    assert v.title is not None and v.title.startswith("kernel BUG")


def test_task_rows_and_the_member_an_unreadable_task_faults_at() -> None:
    k = Kernel()
    parent = k.task(1, 1, b"init")
    child = k.task(7, 7, b"sh", state=1, parent=parent, cpu=1)
    running = {child: 0}
    assert task_row(k.obj(parent), {}) == TaskRow(1, 0, 1, 0, parent, "R", "init", False)
    assert task_row(k.obj(child), running) == TaskRow(7, 1, 7, 0, child, "S", "sh", True)
    # a task straddling the end of memory: its pid is read, the fault names real_parent (at 72)
    with pytest.raises(FaultError) as exc:
        task_row(k.obj(END - 0x10), {})
    assert exc.value.address == END - 0x10 + 72
