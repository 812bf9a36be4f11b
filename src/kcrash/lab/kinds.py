"""
kcrash.lab.kinds
================

The table of crash kinds the lab can produce: how each is triggered (the test module, sysrq, the
init process, memory pressure, an injected NMI), where the crash originates, and the panic
message the kernel prints. A new kind is one row here plus its trigger in ``init.sh`` (and, for
module kinds, in ``kmod/kcrash_test.c``). Kinds whose trigger is ``module`` need the test module;
kernels that cannot build it (see :class:`kcrash.lab.debian.Flavour`) run the others only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kcrash.errors import LabError
from kcrash.lab.arches import get_arch

__all__ = ["KINDS", "CrashKind", "get_kind", "kind_for_arch",
           "supported_kinds", "unsupported_on_arch"]


@dataclass(frozen=True, slots=True)
class CrashKind:
    """One crash kind.

    ``crash_function`` is the function the crash starts in (a module function for module kinds);
    ``panic_message`` is a substring of the ``Kernel panic - not syncing:`` line; ``slow`` kinds
    wait for a watchdog (hung task, soft lockup) and get a longer timeout.
    """

    name: str
    trigger: str
    crash_function: str
    panic_message: str
    slow: bool = False
    blocked_function: str | None = None


KINDS: dict[str, CrashKind] = {k.name: k for k in (
    CrashKind("BUG", "module", "kcrash_test_do_bug", "Fatal exception"),
    CrashKind("NULL_READ", "module", "kcrash_test_do_null_read", "Fatal exception"),
    CrashKind("NULL_WRITE", "module", "kcrash_test_do_null_write", "Fatal exception"),
    CrashKind("WARNING", "module", "kcrash_test_do_warning", "panic_on_warn set"),
    CrashKind("PANIC", "module", "kcrash_test_do_panic", "kcrash_test: PANIC requested"),
    CrashKind("DIVZERO", "module", "kcrash_test_do_divzero", "Fatal exception"),
    CrashKind("STACK_OVERFLOW", "module", "kcrash_test_recurse", "Fatal exception"),
    CrashKind("SOFTLOCKUP", "module", "kcrash_test_do_softlockup", "softlockup: hung tasks", slow=True),
    CrashKind("SPINLOCKUP", "module", "kcrash_test_do_spinlockup", "softlockup: hung tasks", slow=True),
    # khungtaskd's panic() caller check_hung_uninterruptible_tasks is inlined into watchdog on both
    # Debian builds (drgn shows it as an inline frame), so the physical caller of panic() is watchdog
    CrashKind("HUNG_ABBA", "module", "watchdog", "hung_task: blocked tasks",
              slow=True, blocked_function="kcrash_test_abba_lock"),
    CrashKind("SYSRQ", "sysrq", "sysrq_handle_crash", "sysrq triggered crash"),
    CrashKind("INITEXIT", "init", "do_exit", "Attempted to kill init!"),
    CrashKind("OOM", "oom", "out_of_memory", "Out of memory"),
    CrashKind("NMI", "nmi", "unknown_nmi_error", "NMI"),
)}


def get_kind(name: str) -> CrashKind:
    """Look a kind up by name, case-insensitively (``sysrq`` and ``SYSRQ`` are the same)."""
    key = name.upper().replace("-", "_")
    if key not in KINDS:
        raise LabError(f"unknown crash kind {name!r}; known kinds: {', '.join(KINDS)}")
    return KINDS[key]


def supported_kinds(test_module: bool) -> tuple[str, ...]:
    """Names of the kinds a kernel can crash with: all of them, or without the test module those
    that need none (sysrq, init, oom, nmi triggers)."""
    return tuple(name for name, kind in KINDS.items() if test_module or kind.trigger != "module")



def unsupported_on_arch(kind: CrashKind, arch: str) -> str | None:
    """Why ``kind`` cannot crash a guest of ``arch`` (:mod:`kcrash.lab.arches`), or None when it can."""
    return dict(get_arch(arch).unsupported_kinds).get(kind.name)


def kind_for_arch(kind: CrashKind, arch: str) -> CrashKind:
    """``kind`` with the facts that differ on ``arch`` (its panic message)."""
    message = dict(get_arch(arch).panic_messages).get(kind.name)
    return replace(kind, panic_message=message) if message else kind
