"""The oops parser on real serial consoles of the crash lab (slow: each new crash boots a guest).

For every lab crash kind, the first report of the console log must have the right title/type and its
:attr:`~kcrash.oops.model.OopsReport.guilty_function` must be the function the kernel's semantics blame:

* module kinds: ``lab.json``'s ``crash_function`` (the faulting/warning function; the spinning RIP
  function for a soft lockup; the deepest ``kcrash_test_recurse`` frame for the stack overflow; the caller
  of ``panic()`` for an explicit panic);
* HUNG_ABBA: ``lab.json``'s ``blocked_function`` (``kcrash_test_abba_lock``): a hung-task report blames the
  function the task sleeps in, below the scheduler and ``mutex_lock``. (``crash_function`` names
  ``check_hung_uninterruptible_tasks``, khungtaskd's caller of ``panic()``, which is the watchdog, not the
  culprit, and on 6.1 is inlined into ``watchdog`` so it is not even in the log);
* SYSRQ ``sysrq_handle_crash``, INITEXIT ``do_exit``, OOM ``out_of_memory``: the caller of ``panic()``, as
  ``lab.json`` says. For OOM this is deliberate: with ``panic_on_oom`` the machine dies because memory ran
  out system-wide; the allocating task (``dd`` writing to tmpfs) is an arbitrary victim, so the
  allocation path is not blamed;
* NMI ``unknown_nmi_error`` (see below).

Where the console cannot hold the answer the test says so with ``xfail`` (never a silent pass): the guest is
paused by pvpanic inside ``panic()``'s notifier chain, before ``console_flush_on_panic()``, so text printed
from NMI context or while another CPU owns the console never reaches the serial port (it is in the vmcore's
printk buffer). What was seen on Debian 6.1.192 / 6.12.117 under QEMU TCG:

* NMI: the console ends at ``kcrash-lab: ready kind=NMI``; neither ``Uhhuh. NMI received for unknown
  reason`` nor ``Kernel panic - not syncing: NMI: Not continuing`` is there, so there is no report at all.
* STACK_OVERFLOW: 6.1 prints the whole ``BUG: TASK stack guard page was hit`` report (only the panic line is
  lost); 6.12 stops at ``kcrash_test: triggering STACK_OVERFLOW``: no report.
* SOFTLOCKUP: when a ``stop_machine()`` (TSC clocksource switch) is pending, the first full report is
  CPU 0's stopper thread spinning in ``multi_cpu_stop`` while it waits for the CPU that spins in
  ``kcrash_test_do_softlockup``; that CPU gets only its ``BUG: soft lockup - CPU#1 stuck`` header out. The
  parser then gives no guilty function (a victim is not blamed); it names the function when the log has it.
* SPINLOCKUP: ``kcrash_test_do_spinlockup`` ends in a tail call (``jmp _raw_spin_lock``), so its frame is
  never on the stack; the log shows ``_raw_spin_lock`` called from ``kcrash_test_level2``, which is what the
  parser reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from kcrash.oops import OopsReport, iter_reports_in_file

pytestmark = pytest.mark.lab

#: kind -> (crash type, title prefix) of the first report.
EXPECTED: Final[dict[str, tuple[str, str]]] = {
    "BUG": ("BUG", "kernel BUG in "),
    "NULL_READ": ("NULL-POINTER-DEREFERENCE", "BUG: unable to handle kernel NULL pointer dereference in "),
    "NULL_WRITE": ("NULL-POINTER-DEREFERENCE", "BUG: unable to handle kernel NULL pointer dereference in "),
    "WARNING": ("WARNING", "WARNING in "),
    "PANIC": ("DoS", "kernel panic: kcrash_test: PANIC requested"),
    "DIVZERO": ("DoS", "divide error in "),
    "STACK_OVERFLOW": ("", "BUG: stack guard page was hit in "),
    "SOFTLOCKUP": ("HANG", "BUG: soft lockup in "),
    "SPINLOCKUP": ("HANG", "BUG: soft lockup in "),
    "HUNG_ABBA": ("HANG", "INFO: task hung in "),
    "SYSRQ": ("DoS", "kernel panic: sysrq triggered crash"),
    "INITEXIT": ("DoS", "kernel panic: Attempted to kill init!"),
    "OOM": ("DoS", "kernel panic: Out of memory"),
    "NMI": ("DoS", "kernel panic: NMI"),
}

#: Kinds whose console may lack the text needed (see the module docstring), with the reason.
MAY_BE_INCOMPLETE: Final[dict[str, str]] = {
    "NMI": "console ends before any NMI text (pvpanic pauses the guest before the console is flushed)",
    "STACK_OVERFLOW": "console truncated before (part of) the guard-page report",
    "SOFTLOCKUP": "the spinning CPU's registers/stack never reached the console (stop_machine victim reported)",
    "SPINLOCKUP": "kcrash_test_do_spinlockup tail-calls _raw_spin_lock, so it is on no stack",
}

CASES: Final = [*((kind, "6.12") for kind in EXPECTED), ("BUG", "6.1"), ("SYSRQ", "6.1"), ("HUNG_ABBA", "6.1")]


def _expected_guilty(lab: dict[str, object]) -> str:
    blocked = lab.get("blocked_function")
    return str(blocked if blocked else lab["crash_function"])


def _first_report(console: Path) -> OopsReport | None:
    return next(iter_reports_in_file(console), None)


def _incomplete(kind: str, why: str) -> None:
    if kind in MAY_BE_INCOMPLETE:
        pytest.xfail(f"{kind}: {MAY_BE_INCOMPLETE[kind]} ({why})")
    pytest.fail(f"{kind}: {why}")


@pytest.mark.parametrize(("kind", "kernel"), CASES, ids=[f"{k}-{v}" for k, v in CASES])
def test_console_parses_to_kind_and_guilty_function(lab_crash: Callable[..., Path], kind: str,
                                                    kernel: str) -> None:
    crash = lab_crash(kind, kernel=kernel)
    lab = json.loads((crash / "lab.json").read_text())
    console = crash / "console.log"
    want_guilty = _expected_guilty(lab)
    rep = _first_report(console)
    if rep is None:
        _incomplete(kind, "no crash report in the console log")
        return
    want_type, want_title = EXPECTED[kind]
    assert (rep.crash_type, rep.title[:len(want_title)]) == (want_type, want_title), rep.title
    if rep.guilty_function != want_guilty and want_guilty not in console.read_text(errors="replace"):
        _incomplete(kind, f"{want_guilty} is nowhere in the console; parser says {rep.guilty_function!r}")
    assert rep.guilty_function == want_guilty, rep.title
