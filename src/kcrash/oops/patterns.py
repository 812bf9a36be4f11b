"""
kcrash.oops.patterns
====================

The crash knowledge of the oops parser, as data: the oops *groups* (a header substring, the
line suppressions and the title *formats* tried in order), the stack-extraction recipes, the global
skip list for guilty frames, the title normalisation rules and the title → crash type table.

A new crash kind is one :class:`OopsFormat` row in :data:`OOPS_GROUPS` plus a fixture file under
``tests/fixtures/oops/``. The behaviour follows ``shared/reference/oops-reports.md`` (which is
derived from syzkaller's ``pkg/report``); the regular expressions quoted there are the specification.
This module holds no parsing logic beyond building the tables. Building them compiles nothing: every
expression is a :class:`~kcrash.oops.lazyre.LazyPattern`, compiled on the first text that could match it,
and the skip lists are :class:`~kcrash.oops.lazyre.Alternation` objects.
"""

from __future__ import annotations

import functools
import re
from typing import Final, Literal

from kcrash.oops.lazyre import Alternation, LazyPattern

__all__ = [
    "CORRUPTED_LINE_RES",
    "CORRUPTED_TITLE_RE",
    "FRAME_RES",
    "GLOBAL_SKIP",
    "INFO_MESSAGES_WITH_STACK",
    "OOPS_GROUPS",
    "REPORT_START_IGNORES",
    "STACK",
    "STACK_START_RES",
    "STALL_ANCHORS",
    "STRIP_FRAME_PREFIXES",
    "SUPPRESSIONS",
    "TITLE_REPLACEMENTS",
    "TITLE_TO_TYPE",
    "LazyPattern",
    "OopsFormat",
    "OopsGroup",
    "StackSpec",
    "compile_pattern",
    "skip_alternation",
]

_MACROS: Final = (
    ("{{ADDR}}", r"0x[0-9a-f]+"),
    ("{{PC}}", r"\[\<?(?:0x)?[0-9a-f]+\>?\]"),
    ("{{FUNC}}", r"([a-zA-Z0-9_]+)(?:\.|\+)"),
    # kcrash: "+" added to syzkaller's class: out-of-tree modules are built under paths holding the kernel
    # release, and Debian releases contain "+" ("6.12.117+deb12-amd64").
    ("{{SRC}}", r"([a-zA-Z0-9-_/.+]+\.[a-z]+:[0-9]+)"),
    ("{{TASK}}", r"[\s\S]{0,100}?"),
)


def _expand(pattern: str) -> str:
    if "{{" in pattern:
        for macro, expansion in _MACROS:
            pattern = pattern.replace(macro, expansion)
    return pattern


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Expand the ``{{ADDR}} {{PC}} {{FUNC}} {{SRC}} {{TASK}}`` macros and compile (ASCII classes)."""
    return re.compile(_expand(pattern), re.ASCII)


def _c(pattern: str, *, prefilter: bool = True) -> LazyPattern:
    # compile_pattern, on first use (see LazyPattern for the prefilter).
    return LazyPattern(_expand(pattern), re.ASCII, prefilter=prefilter)


#: Marker in :attr:`StackSpec.parts`: "parse a stack trace from here".
STACK: Final = None

Part = LazyPattern | None


# The table rows are plain slotted classes, never changed after the tables are built: a frozen
# dataclass (or a NamedTuple) costs 0.15-0.4 ms of import per class, as much as building all the rows.


class StackSpec:
    """How the guilty frame is found: ``parts`` are matched in sequence (``STACK`` parses frames)."""

    # slots: a record as a plain class, not a dataclass: 0.09 vs 0.81 ms CPU to create (bench/RESULTS.md)
    __slots__ = ("extractor", "global_skip", "parts", "parts2", "skip")
    parts: tuple[Part, ...]
    parts2: tuple[Part, ...]
    skip: tuple[str, ...]
    extractor: Literal["", "stall", "hang"]
    #: ``False``: only ``skip`` applies, not the global skip list (whose substring entries such as
    #: ``panic`` or ``string`` would hide the very function a kcrash guilty recipe looks for).
    global_skip: bool

    def __init__(self, parts: tuple[Part, ...], parts2: tuple[Part, ...] = (), skip: tuple[str, ...] = (),
                 extractor: Literal["", "stall", "hang"] = "", global_skip: bool = True) -> None:
        self.parts, self.parts2, self.skip, self.extractor, self.global_skip = parts, parts2, skip, extractor, \
            global_skip


class OopsFormat:
    """One title format: ``fmt`` uses ``{N}`` for the N-th argument (captures, then frames)."""

    # slots: a record as a plain class, not a dataclass: 0.09 vs 0.81 ms CPU to create (bench/RESULTS.md)
    __slots__ = ("alt", "corrupted", "fmt", "guilty", "nostack", "report", "stack", "title")
    title: LazyPattern
    fmt: str
    report: LazyPattern | None
    alt: tuple[str, ...]
    stack: StackSpec | None
    nostack: bool
    corrupted: bool
    #: kcrash extension: the recipe for :attr:`~kcrash.oops.model.OopsReport.guilty_function` where the
    #: title frame (syzkaller's choice, pinned by the corpus) is not the function at fault. ``None``
    #: means the guilty function is the title frame.
    guilty: StackSpec | None

    def __init__(self, title: LazyPattern, fmt: str, report: LazyPattern | None = None, alt: tuple[str, ...] = (),
                 stack: StackSpec | None = None, nostack: bool = False, corrupted: bool = False,
                 guilty: StackSpec | None = None) -> None:
        self.title, self.fmt, self.report, self.alt = title, fmt, report, alt
        self.stack, self.nostack, self.corrupted, self.guilty = stack, nostack, corrupted, guilty


class OopsGroup:
    """Lines containing ``header`` (and matching none of ``suppressions``) start a report."""

    # slots: a record as a plain class, not a dataclass: 0.09 vs 0.81 ms CPU to create (bench/RESULTS.md)
    __slots__ = ("formats", "header", "suppressions")
    header: str
    formats: tuple[OopsFormat, ...]
    suppressions: tuple[LazyPattern, ...]

    def __init__(self, header: str, formats: tuple[OopsFormat, ...], suppressions: tuple[LazyPattern, ...] = ()) \
            -> None:
        self.header, self.formats, self.suppressions = header, formats, suppressions


def _fmt(title: str, fmt: str, *, report: str | None = None, alt: tuple[str, ...] = (),
         stack: StackSpec | None = None, nostack: bool = False, corrupted: bool = False,
         guilty: StackSpec | None = None) -> OopsFormat:
    return OopsFormat(_c(title), fmt, _c(report) if report is not None else None, alt, stack, nostack, corrupted,
                      guilty)


# ---------------------------------------------------------------------------------------------
# Frames and stacks

# The stack-walk patterns are searched line by line in every report: compiled on first use, unfiltered.
RIP_FRAME: Final = _c(
    r"(?:IP|NIP|pc |PC is at):? (?:(?:[0-9]+:)?(?:{{PC}} +){0,2}{{FUNC}}|(?:[0-9]+:)?0x[0-9a-f]+|"
    r"(?:[0-9]+:)?{{PC}} +\[< *\(null\)>\] +\(null\)|[0-9]+: +\(null\))", prefilter=False)
CALL_TRACE: Final = _c(r"(?:Call (?:T|t)race:)|(?:Backtrace:)", prefilter=False)

STACK_START_RES: Final = tuple(_c(p) for p in (
    r"Call (?:T|t)race", r"Allocated:", r"Allocated by task [0-9]+:", r"Freed:",
    r"Freed by task [0-9]+:", r"[^k] backtrace(?: \(crc [0-9A-Fa-f]*\))?:", r"Backtrace:",
    r"Uninit was stored to memory at",
    r"status: [0-9a-f]{16} badaddr: [0-9a-f]{16} cause: [0-9a-f]{16}",
))
#: The riscv ``show_regs`` line: a stack start that may legitimately have no frames after it.
RISCV_STACK_START: Final = STACK_START_RES[-1]

FRAME_RES: Final = (
    _c(r"^ *(?:{{PC}} ){0,2}{{FUNC}}", prefilter=False),
    _c(r"^ *{{PC}} \(([a-zA-Z0-9_.]+)\) from {{PC}} \({{FUNC}}"),
)
CORRUPTED_LINE_RES: Final = (_c(r"^( \[\<?(?:0x)?[0-9a-f]+\>?\])? should_fail(slab)?(\.[a-z0-9.]+)?\+0x"),)
CORRUPTED_TITLE_RE: Final = _c(r"\[ *[0-9]+\.[0-9]+\]")

STRIP_FRAME_PREFIXES: Final = (
    "SYSC_", "SyS_", "sys_", "__x64_", "__ia32_", "__arm64_", "____sys_", "___sys_", "__sys_",
    "__se_", "__se_sys_", "__do_sys_", "compat_SYSC_", "compat_SyS_", "ksys_",
)

_GLOBAL_SKIP: Final = (
    "__sanitizer", "__asan", "kasan", "hwasan", "__msan", "kmsan", "kcsan_setup_watchpoint",
    "check_memory_region", "check_heap_object", "check_object", "read_word_at_a_time",
    "(read|write)_once_.*nocheck", "print_address_description", "panic", "invalid_op", "report_bug",
    "fixup_bug", "print_report", "print_usage_bug", "do_error", "_trap$|do_trap", "show_stack",
    "dump_stack", "walk_stack", "dump_backtrace", "warn_slowpath", "warn_alloc", "warn_bogus",
    "__warn", "alloc_page", "k?v?(?:m|z|c)alloc", "krealloc", "kmem_cache", "allocate_slab",
    "__alloc_frozen_pages_noprof", "folio_(?:alloc|unlock)", "filemap_alloc_folio",
    "__filemap_get_folio", "find_or_create_page", "do_read_cache_folio", "read_cache_page",
    "pagecache_get_page", "grab_cache_page_write_begin", "slab_", "debug_object",
    "timer_is_static_object", "work_is_static_object", "__might_fault", "print_unlock",
    "imbalance_bug", "lockdep", "bh_enable", "bh_disable", "perf_trace", "lock_acquire",
    "lock_release", "lock_class", "mark_lock", "(reacquire|mark)_held_locks", "raw_spin_rq",
    "spin_lock", "spin_trylock", "spin_unlock", "read_lock", "read_trylock", "write_lock",
    "write_trylock", "read_unlock", "write_unlock", "^down$", "down_read", "down_write",
    "down_read_trylock", "down_write_trylock", "down_trylock", "up_read", "up_write", "^mutex_",
    "^__mutex_", "^rt_mutex_", "owner_on_cpu", "osq_lock", "osq_unlock",
    "atomic(64)?_(dec|inc|read|set|or|xor|and|add|sub|fetch|xchg|cmpxchg|try)",
    "(set|clear|change|test)_bit", "__wake_up", "^refcount_", "^kref_", "ref_tracker",
    "seqprop_assert", "memcpy", "memcmp", "memset", "memchr", "memmove", "memdup", "strcmp",
    "strncmp", "strcpy", "strlcpy", "strncpy", "strscpy", "strlen", "strstr", "strnstr", "strnlen",
    "strchr", "strdup", "strndup", "copy_to_user", "copy_from_user", "copy_to_iter",
    "copy_from_iter", "copy_page_to_iter", "copy_page_from_iter", "copy_folio_to_iter", "^copyin$",
    "^copyout$", "put_user", "get_user", "might_fault", "might_sleep", "list_add", "list_del",
    "list_replace", "list_move", "list_splice", "^rb_", "^__rb_", "_indirect_thunk_", "string",
    "pointer", "snprintf", "scnprintf", "kasprintf", "kvasprintf", "printk", "va_format",
    "dev_info", "dev_notice", "dev_warn", "dev_err", "dev_alert", "dev_crit", "dev_emerg",
    "program_check_exception", "program_check_common", "del_timer", "flush_work",
    "__cancel_work_timer", "cancel_work_sync", "try_to_grab_pending", "flush_workqueue",
    "drain_workqueue", "destroy_workqueue", "queue_work", "finish_wait", "kthread_stop", "kobject_",
    "add_uevent_var", "get_device_parent", "device_add", "device_del", "device_unregister",
    "device_destroy", "device_release", "devres_release_all", "hwrng_unregister",
    "i2c_del_adapter", "__unregister_client", "device_for_each_child", "rollback_registered",
    "unregister_netdev", "sysfs_remove", "device_remove_file", "tty_unregister_device",
    "dummy_urb_enqueue", "usb_kill_urb", "usb_kill_anchored_urbs", "usb_control_msg",
    "usb_hcd_submit_urb", "usb_submit_urb", "^complete$", "wait_for_completion", "^kv?free$",
    "kfree_skb", "readb$", "readw$", "readl$", "readq$", "writeb$", "writew$", "writel$", "writeq$",
    "logic_in", "logic_out", r"^crc\d+", "crc_itu_t", "__might_resched", "assertfail", "^iput$",
    "^iput_final$", "^ihold$", "hex_dump_to_buffer", "print_hex_dump", "^klist_",
    "(trace|lockdep)_(hard|soft)irq", "^(un)?lock_page", "stack_trace_consume_entry",
    "arch_stack_walk", "stack_trace_save", "insert_work", "__queue_delayed_work",
    "queue_delayed_work_on", "ida_free", "do_(kernel|translation)_fault", "do_mem_abort",
    "el1_abort", "el1h_64_sync(?:_handler)?", "print_tainted", "xas_(?:start|load|find)",
    "find_lock_entries", "truncate_inode_pages_range", "__phys_addr", "__fortify_report",
    "cleanup_srcu_struct", "rhashtable_lookup", "extract_(user|iter)_to_sg", "drop_nlink",
    "^get_taint$", "^put_device$", "lock_timer_base", "__timer_delete_sync", "sk_stop_timer_sync",
    "__mod_timer", "fast_dput", "dput", "mark_buffer_dirty",
)


#: kcrash additions: x86 trap/exception entry glue of modern kernels (``exc_invalid_op``,
#: ``asm_exc_page_fault``, ``handle_bug``, ``die``) that can show up as reliable frames.
_KCRASH_SKIP: Final = ("^exc_", "^asm_exc_", "^handle_bug$", "^__die", "^die$", "^die_body$", "^oops_end$")


@functools.lru_cache(maxsize=256)
def skip_alternation(extra: tuple[str, ...], global_skip: bool = True) -> Alternation:
    """The global skip list (unless ``global_skip`` is false) plus a format's own entries as an
    :class:`~kcrash.oops.lazyre.Alternation`: ``found_in(name)`` is what searching ``name`` with
    the entries joined by ``|`` into one regex (``re.ASCII``) answers, with nothing compiled up front."""
    return Alternation((_GLOBAL_SKIP + _KCRASH_SKIP if global_skip else ()) + extra, re.ASCII)


#: The global skip list: ``GLOBAL_SKIP.found_in(name)`` is ``skip_alternation(()).found_in(name)``.
GLOBAL_SKIP: Final = skip_alternation(())


def _stack(*parts: Part, skip: tuple[str, ...] = (), parts2: tuple[Part, ...] = (),
           extractor: Literal["", "stall", "hang"] = "", global_skip: bool = True) -> StackSpec:
    return StackSpec(parts, parts2, skip, extractor, global_skip)


# x86 WARNINGs trap and print "RIP:"; powerpc64 prints "--- interrupt: N at func".
_WARNING_FIRST: Final = _c(f"(?:{RIP_FRAME.pattern}|--- interrupt: [0-9]+ at {{{{FUNC}}}})")


def _warning_stack(*skip: str) -> StackSpec:
    return StackSpec((_WARNING_FIRST, STACK), (CALL_TRACE, STACK), skip)


_RIP_CT: Final = _stack(RIP_FRAME, CALL_TRACE, STACK)
_CT: Final = _stack(CALL_TRACE, STACK)
_RIP_ONLY: Final = _stack(RIP_FRAME)
_KMSAN_PARTS: Final = (STACK, _c(r"(Local variable .* created at:|Uninit was created at:)"), STACK)
_KFENCE_HEAD: Final = _c(r"BUG: KFENCE: (?:[a-z\- ]+) in {{FUNC}}")
_KASAN_FREE: Final = r"BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free) in {{FUNC}}"
_PC_FUNC: Final = _c(r"{{PC}} +{{FUNC}}")
_AT_FUNC: Final = _c(r"at: (?:{{PC}} +)?{{FUNC}}")
_LOCK_HELD_USER: Final = (r"lock held when returning to user space(?:.*\n)+?.*leaving the kernel with locks "
                          r"still held(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}")

# kcrash guilty-function recipes (not syzkaller's; they never change a title). The guilty function is
# the function the kernel's own semantics point at, where syzkaller's title frame points elsewhere.

#: Lockups (soft lockup, stack overflow): the function that was running when the watchdog or the guard
#: page fired, i.e. the RIP function, or the first non-skipped frame after it (a spinlock slow path is
#: skipped, so a lock spinning on itself blames its caller). syzkaller titles these with the stall
#: extractor instead, which walks up to the syscall/workqueue entry. A CPU stopper spinning in
#: ``multi_cpu_stop`` is a victim waiting for another CPU (the one that does not reach the stop), so the
#: stop-machine loop and the kthread plumbing under it are skipped too; with nothing left the guilty
#: function is unknown rather than wrong.
_GUILTY_RUNNING: Final = _stack(RIP_FRAME, CALL_TRACE, STACK, skip=(
    "^stop_machine_yield$", "^multi_cpu_stop$", "^cpu_stopper_thread$", "^smpboot_thread_fn$", "^kthread$",
    "^ret_from_fork"))
#: Watchdog panics raised from the timer interrupt or the NMI on behalf of the code they interrupted (soft
#: and hard lockups): that code, i.e. the RIP printed after the ``<IRQ>``/``<NMI>`` frames of the panic's
#: trace, not the watchdog that called ``panic()``.
_GUILTY_INTERRUPTED: Final = StackSpec((CALL_TRACE, RIP_FRAME, STACK), skip=_GUILTY_RUNNING.skip)
#: ``panic()`` called explicitly: its caller. Only the panic/stack-dump/printk plumbing is skipped, not the
#: global list: its ``panic`` substring entry would hide callers such as ``foo_do_panic``.
_GUILTY_PANIC_CALLER: Final = _stack(CALL_TRACE, STACK, global_skip=False, skip=(
    "^v?panic$", "^nmi_panic", "^dump_stack", "^show_stack", "^_?printk", "^vprintk", "^__pfx_"))
#: Hung tasks: the function the task sleeps in, i.e. the first frame below the scheduler and the
#: sleeping primitives (mutexes, rwsems, semaphores, completions, bit/folio waits, RCU grace periods).
_GUILTY_BLOCKED: Final = _stack(CALL_TRACE, STACK, skip=(
    "^__schedule", "^schedule", "^io_schedule", "^preempt_schedule", "^__mutex_lock", "^mutex_lock",
    "^rt_mutex", "^__rt_mutex", "^rwsem_down", "^__rwsem", "^__down", "^down", "^percpu_(?:down|rwsem)",
    "^__wait_for_common", "^wait_for_common", "^wait_for_completion", "^__wait_on_bit", "^out_of_line_wait_on_bit",
    "^bit_wait", "^folio_wait", "^__folio_lock", "^__lock_page", "^wait_on_page", "^msleep", "^usleep_range",
    "^schedule_timeout", "^synchronize_(?:rcu|srcu|net|sched)", "^__synchronize_srcu", "^wait_rcu_gp",
    "^__wait_rcu_gp", "^rcu_barrier"))

# ---------------------------------------------------------------------------------------------
# Groups, in the order they are tried on a line.

_BUG_FORMATS: Final = (
    _fmt("BUG: KASAN:", "KASAN: {1} {3} in {4}",
         report=r"BUG: KASAN: ([a-z\-]+) in {{FUNC}}(?:.*\n)+?.*(Read|Write) (?:of size|at addr) (?:[0-9a-f]+)",
         alt=("bad-access in {4}",),
         stack=_stack(_c(r"BUG: KASAN: (?:[a-z\-]+) in {{FUNC}}"), CALL_TRACE, STACK,
                      skip=("kernel_fault", "tag_check", "mem_abort", "^el1_", "^el1h_"))),
    _fmt("BUG: KASAN:", "KASAN: invalid-free in {2}", report=_KASAN_FREE, alt=("invalid-free in {2}",),
         stack=_stack(_c(_KASAN_FREE), CALL_TRACE, STACK, skip=("slab_", "kfree", "vunmap", "vfree"))),
    _fmt(r"BUG: KASAN: ([a-z\-]+) on address(?:.*\n)+?.*(Read|Write) of size ([0-9]+)", "KASAN: {1} {2}"),
    _fmt(r"BUG: KASAN: (.*)", "KASAN: {1}", corrupted=True),
    _fmt("BUG: KMSAN: kernel-usb-infoleak", "KMSAN: kernel-usb-infoleak in {2}",
         report="BUG: KMSAN: kernel-usb-infoleak in {{FUNC}}", alt=("KMSAN origin in {3}",), nostack=True,
         stack=_stack(*_KMSAN_PARTS, skip=("alloc_skb", "usb_submit_urb", "usb_start_wait_urb",
                                            "usb_bulk_msg", "usb_interrupt_msg", "usb_control_msg"))),
    _fmt("BUG: KMSAN:", "KMSAN: {1} in {3}", report=r"BUG: KMSAN: ([a-z\-]+) in {{FUNC}}",
         alt=("bad-access in {3}",), nostack=True,
         stack=_stack(*_KMSAN_PARTS, skip=("alloc_skb", "netlink_ack", "netlink_rcv_skb", "_encrypt$",
                                            "^(?:crypto|cipher|drbg|rng)_"))),
    _fmt("BUG: KCSAN: data-race", "KCSAN: {1}", report="BUG: KCSAN: (.*)", nostack=True),
    _fmt("BUG: KCSAN:", "KCSAN: {1}", report="BUG: KCSAN: (.*)", nostack=True),
    _fmt(r"BUG: KFENCE: (use-after-free|out-of-bounds) (read|write) in {{FUNC}}", "KFENCE: {1} {2} in {4}",
         alt=("bad-access in {4}",), stack=_stack(_KFENCE_HEAD, STACK)),
    _fmt("BUG: KFENCE: invalid free in {{FUNC}}", "KFENCE: invalid free in {2}",
         alt=("invalid-free in {2}",), nostack=True, stack=_stack(_KFENCE_HEAD, STACK)),
    _fmt("BUG: KFENCE: invalid (read|write) in {{FUNC}}", "KFENCE: invalid {1} in {3}",
         alt=("bad-access in {3}",), stack=_stack(_KFENCE_HEAD, STACK)),
    _fmt("BUG: KFENCE: memory corruption in {{FUNC}}", "KFENCE: memory corruption in {2}", nostack=True,
         stack=_stack(_KFENCE_HEAD, STACK)),
    _fmt("BUG: (?:unable to handle kernel paging request|unable to handle page fault for address|"
         "Unable to handle kernel data access)", "BUG: unable to handle kernel paging request in {1}",
         alt=("bad-access in {1}",), stack=_RIP_CT),
    _fmt("BUG: (?:unable to handle kernel NULL pointer dereference|kernel NULL pointer dereference|"
         "Kernel NULL pointer dereference)", "BUG: unable to handle kernel NULL pointer dereference in {1}",
         alt=("bad-access in {1}",), stack=_RIP_CT),
    _fmt("BUG: (?:unable to handle kernel|Unable to handle kernel)", "BUG: unable to handle kernel",
         corrupted=True),
    _fmt("BUG: (spinlock|rwlock) (lockup suspected|already unlocked|recursion|cpu recursion|bad magic|"
         "wrong owner|wrong CPU|trylock failure on UP)", "BUG: {1} {2} in {3}",
         stack=_stack(CALL_TRACE, STACK, skip=("spin_", "_lock", "_unlock"))),
    _fmt("BUG: soft lockup", "BUG: soft lockup in {1}", alt=("stall in {1}",),
         stack=_stack(RIP_FRAME, CALL_TRACE, STACK, extractor="stall"), guilty=_GUILTY_RUNNING),
    _fmt("BUG: .*still has locks held!", "BUG: still has locks held in {1}",
         report=r"BUG: .*still has locks held!(?:.*\n)+?.*{{PC}} +{{FUNC}}"),
    _fmt("BUG: scheduling while atomic", "BUG: scheduling while atomic in {1}",
         stack=_stack(CALL_TRACE, STACK, skip=("schedule",))),
    _fmt("BUG: lock held when returning to user space", "BUG: lock held when returning to user space in {1}",
         report="BUG: " + _LOCK_HELD_USER, nostack=True),
    _fmt("BUG: bad unlock balance detected!", "BUG: bad unlock balance in {1}",
         stack=_stack(_PC_FUNC, CALL_TRACE, STACK)),
    _fmt("BUG: held lock freed!", "BUG: held lock freed in {1}",
         report=r"BUG: held lock freed!(?:.*\n)+?.*{{PC}} +{{FUNC}}"),
    _fmt("BUG: Bad rss-counter state", "BUG: Bad rss-counter state", nostack=True),
    _fmt("BUG: non-zero nr_ptes on freeing mm", "BUG: non-zero nr_ptes on freeing mm", nostack=True),
    _fmt("BUG: non-zero nr_pmds on freeing mm", "BUG: non-zero nr_pmds on freeing mm", nostack=True),
    _fmt("BUG: Dentry .* still in use", "BUG: Dentry still in use in {1}",
         report=r"BUG: Dentry .* still in use \([0-9]+\) \[(unmount) of ([^\]]+)\]",
         alt=("BUG: Dentry still in use [{1} of {2}]",)),
    _fmt("BUG: Bad page (state|cache)", "BUG: Bad page {1} in {2}",
         stack=_stack(_c("page last allocated"), STACK,
                      skip=("(free|put|get|update|release)_page", "free_unref", "^_*folio",
                            "truncate_inode_pages", "page_frag_free", "alloc", "vmap", "page_owner"))),
    _fmt("BUG: Bad page map", "BUG: Bad page map"),
    _fmt("BUG: workqueue lockup", "BUG: workqueue lockup", nostack=True),
    _fmt("BUG: sleeping function called from invalid context at (.*)",
         "BUG: sleeping function called from invalid context in {2}", stack=_CT),
    _fmt(r"BUG: using ([a-z_]+)\(\) in preemptible", "BUG: using {1}() in preemptible code in {2}",
         stack=_stack(CALL_TRACE, STACK, skip=("dump_stack", "preemption", "preempt", "debug_",
                                                "processor_id", "this_cpu"))),
    _fmt("BUG: workqueue leaked lock or atomic", "BUG: workqueue leaked lock or atomic in {1}",
         report=r"BUG: workqueue leaked lock or atomic(?:.*\n)+?.*last function: ([a-zA-Z0-9_]+)\n",
         nostack=True),
    _fmt("BUG: memory leak", "memory leak in {1}",
         stack=_stack(_c(r"backtrace(?: \(crc [0-9A-Fa-f]*\))?:"), STACK,
                      skip=("kmemleak", "mmap", "kmem", "slab", "alloc", "create_object", "idr_get",
                            "list_lru_init", "kasprintf", "kvasprintf", "pcpu_create", "strdup",
                            "strndup", "memdup"))),
    _fmt("BUG: .*stack guard page was hit at", "BUG: stack guard page was hit in {1}",
         alt=("stack-overflow in {1}",), stack=_stack(RIP_FRAME, CALL_TRACE, STACK, extractor="stall"),
         guilty=_GUILTY_RUNNING),
    _fmt("BUG: Invalid wait context", "WARNING: locking bug in {1}",
         stack=_stack(CALL_TRACE, STACK, skip=("lock_sock", "release_sock"))),
    _fmt(r"BUG:\s*(?:\n|\Z)", "BUG: corrupted", corrupted=True),
)

_WARNING_FORMATS: Final = (
    _fmt(r"WARNING: .*lib/debugobjects\.c.* (?:debug_print|debug_check|at)", "WARNING: ODEBUG bug in {1}",
         stack=_warning_stack("debug_", "rcu", "hrtimer_", "timer_", "work_", "percpu_", "vunmap", "vfree",
                              "__free_", "debug_check", "kobject_")),
    _fmt(r"WARNING: .*mm/usercopy\.c.* (?:usercopy_warn|at)", "WARNING: bad usercopy in {1}",
         stack=_warning_stack("usercopy", "__check")),
    _fmt(r"WARNING: .*lib/kobject\.c.* (?:kobject_|at)", "WARNING: kobject bug in {1}",
         stack=_warning_stack("kobject_")),
    _fmt(r"WARNING: .*fs/proc/generic\.c.* (?:proc_register|at)", "WARNING: proc registration bug in {1}",
         stack=_warning_stack("proc_")),
    _fmt(r"WARNING: .*lib/refcount\.c.* (?:refcount_|at)", "WARNING: refcount bug in {1}",
         stack=_warning_stack("refcount", "kobject_")),
    _fmt(r"WARNING: .*kernel/locking/lockdep\.c.*lock_", "WARNING: locking bug in {1}",
         stack=_warning_stack("lock_sock", "release_sock")),
    _fmt("WARNING: .*still has locks held!", "WARNING: still has locks held in {1}",
         report=r"WARNING: .*still has locks held!(?:.*\n)+?.*at: {{FUNC}}"),
    _fmt("WARNING: Nested lock was not taken", "WARNING: nested lock was not taken in {1}",
         stack=_warning_stack()),
    _fmt("WARNING: lock held when returning to user space",
         "WARNING: lock held when returning to user space in {1}", report="WARNING: " + _LOCK_HELD_USER,
         nostack=True),
    _fmt(r"WARNING: .*mm/.*\.c.* k?.?malloc", "WARNING: kmalloc bug in {1}",
         stack=_warning_stack("kmalloc", "krealloc", "slab", "kmem")),
    _fmt("WARNING: .*mm/vmalloc.c.*__vmalloc_node", "WARNING: zero-size vmalloc in {1}",
         stack=_warning_stack()),
    _fmt("WARNING: .* usb_submit_urb", "WARNING in {1}/usb_submit_urb",
         stack=_warning_stack("usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg", "usb_interrupt_msg",
                              "usb_control_msg")),
    _fmt(r"WARNING: {{SRC}} at 0x\d+, CPU#\d+", "WARNING in {2}", stack=_warning_stack()),
    _fmt("WARNING: .* at {{SRC}} {{FUNC}}", "WARNING in {3}", stack=_warning_stack()),
    _fmt("WARNING: {{SRC}} at {{FUNC}}", "WARNING in {3}", stack=_warning_stack()),
    _fmt(r"WARNING: \[.*\] {{SRC}} at {{FUNC}}.*", "WARNING in {3}", stack=_warning_stack()),
    _fmt("WARNING: possible circular locking dependency detected", "possible deadlock in {1}",
         report="WARNING: possible circular locking dependency detected(?:.*\\n)+?.*is trying to acquire lock",
         stack=_stack(_AT_FUNC, _AT_FUNC, STACK, skip=("process_one_work", "flush_workqueue",
                                                        "drain_workqueue", "destroy_workqueue"))),
    _fmt("WARNING: possible irq lock inversion dependency detected", "possible deadlock in {1}",
         report=r"WARNING: possible irq lock inversion dependency detected(?:.*\n)+?.*just changed the state "
                r"of lock(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}"),
    _fmt("WARNING: .*-safe -> .*-unsafe lock order detected", "possible deadlock in {1}",
         stack=_stack(_c("which became (?:.*) at:"), STACK)),
    _fmt("WARNING: possible recursive locking detected", "possible deadlock in {1}",
         report=r"WARNING: possible recursive locking detected(?:.*\n)+?.*is trying to acquire "
                r"lock(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}"),
    _fmt("WARNING: inconsistent lock state", "inconsistent lock state in {2}",
         report=r"WARNING: inconsistent lock state(?:.*\n)+?.*takes(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}",
         stack=_CT),
    _fmt("WARNING: suspicious RCU usage", "WARNING: suspicious RCU usage in {2}",
         report=r"WARNING: suspicious RCU usage(?:.*\n)+?.*?{{SRC}}",
         stack=_stack(CALL_TRACE, STACK, skip=("rcu", "kmem", "slab"))),
    _fmt("WARNING: kernel stack regs at [0-9a-f]+ in [^ ]* has bad '([^']+)' value",
         "WARNING: kernel stack regs has bad '{1}' value", nostack=True),
    _fmt("WARNING: kernel stack frame pointer at [0-9a-f]+ in [^ ]* has bad value",
         "WARNING: kernel stack frame pointer has bad value", nostack=True),
    _fmt("WARNING: bad unlock balance detected!", "WARNING: bad unlock balance in {1}",
         stack=_stack(_PC_FUNC, CALL_TRACE, STACK)),
    _fmt("WARNING: held lock freed!", "WARNING: held lock freed in {1}",
         report=r"WARNING: held lock freed!(?:.*\n)+?.*at:(?: {{PC}})? +{{FUNC}}"),
    _fmt("WARNING: kernel stack regs .* has bad 'bp' value", "WARNING: kernel stack regs has bad value",
         nostack=True),
    _fmt("WARNING: kernel stack frame pointer .* has bad value", "WARNING: kernel stack regs has bad value",
         nostack=True),
    _fmt(r"WARNING:\s*(?:\n|\Z)", "WARNING: corrupted", corrupted=True),
)


def _old_lockdep(banner: str, middle: str) -> OopsFormat:
    # The 4.x "[ INFO: ... ]" lockdep banners: the frame is the report capture.
    report = rf"INFO: {banner} \](?:.*\n)+?.*{middle}(?:.*\n)+?.*at: {{{{PC}}}} +{{{{FUNC}}}}"
    return _fmt(f"INFO: {banner}", "possible deadlock in {1}", report=report)


_INFO_FORMATS: Final = (
    _old_lockdep("possible circular locking dependency detected", "is trying to acquire lock"),
    _old_lockdep("possible irq lock inversion dependency detected", "just changed the state of lock"),
    _old_lockdep("SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected", "is trying to acquire"),
    _old_lockdep("possible recursive locking detected", "is trying to acquire lock"),
    _fmt("INFO: inconsistent lock state", "inconsistent lock state in {1}",
         report=r"INFO: inconsistent lock state \](?:.*\n)+?.*takes(?:.*\n)+?.*at: {{PC}} +{{FUNC}}"),
    _fmt("INFO: rcu_(?:preempt|sched|bh|tasks) (?:self-)?detected(?: expedited)? stall",
         "INFO: rcu detected stall in {1}", alt=("stall in {1}",),
         stack=_stack(_c("apic_timer_interrupt"), RIP_FRAME, STACK,
                      parts2=(_c("(?:apic_timer_interrupt|Exception stack|el1h_64_irq)"), STACK),
                      skip=("apic_timer_interrupt", "rcu"), extractor="stall")),
    _fmt("INFO: trying to register non-static key", "INFO: trying to register non-static key in {1}",
         stack=_stack(CALL_TRACE, STACK, skip=("stack", "lock", "IRQ"))),
    _fmt("INFO: suspicious RCU usage", "INFO: suspicious RCU usage in {2}",
         report=r"INFO: suspicious RCU usage(?:.*\n)+?.*?{{SRC}}",
         stack=_stack(CALL_TRACE, STACK, skip=("rcu", "kmem", "slab"))),
    _fmt("INFO: task {{TASK}} blocked (?:in I/O wait )?for more than [0-9]+ seconds", "INFO: task hung in {1}",
         alt=("hang in {1}",), stack=_stack(CALL_TRACE, STACK, extractor="hang"), guilty=_GUILTY_BLOCKED),
    _fmt("INFO: task {{TASK}} can't die for more than .* seconds", "INFO: task can't die in {1}",
         alt=("hang in {1}",), stack=_stack(CALL_TRACE, STACK, skip=("schedule",))),
    _fmt("INFO: (Freed|Allocated) in (.*)", "INFO: {1} in {2}", corrupted=True),
    _fmt(r"INFO:\s*(?:\n|\Z)", "INFO: corrupted", corrupted=True),
)

_PANIC_FORMATS: Final = (
    _fmt("Kernel panic - not syncing: stack-protector:", "kernel panic: stack is corrupted in {1}",
         report="Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: {{FUNC}}",
         nostack=True),
    _fmt("Kernel panic - not syncing: stack-protector:", "kernel panic: stack is corrupted in {1}",
         report="Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: [a-f0-9]+",
         stack=_stack(CALL_TRACE, STACK, skip=("stack_chk",))),
    _fmt("Kernel panic - not syncing: corrupted stack end", "kernel panic: corrupted stack end in {1}",
         report="Kernel panic - not syncing: corrupted stack end detected inside scheduler",
         alt=("stack-overflow in {1}",),
         stack=_stack(CALL_TRACE, STACK, skip=("schedule", "retint_kernel"), extractor="stall")),
    _fmt("Kernel panic - not syncing: kernel stack overflow", "kernel stack overflow in {1}",
         alt=("stack-overflow in {1}",), stack=_stack(CALL_TRACE, STACK, skip=("bad_stack",), extractor="stall")),
    _fmt("Kernel panic - not syncing: Attempted to kill init!", "kernel panic: Attempted to kill init!",
         guilty=_GUILTY_PANIC_CALLER),
    _fmt("Kernel panic - not syncing: Couldn't open N_TTY ldisc for [^ ]+ --- error -[0-9]+",
         "kernel panic: Couldn't open N_TTY ldisc"),
    _fmt("Kernel panic - not syncing: Fatal exception", "kernel panic: Fatal exception", corrupted=True),
    _fmt("Kernel panic - not syncing: panic_on_warn set", "kernel panic: panic_on_warn set", corrupted=True),
    _fmt("Kernel panic - not syncing: hung_task: blocked tasks", "kernel panic: hung_task: blocked tasks",
         corrupted=True),
    _fmt("Kernel panic - not syncing: (Hard LOCKUP|softlockup: hung tasks)", "kernel panic: {1}",
         guilty=_GUILTY_INTERRUPTED),
    _fmt("Kernel panic - not syncing: (.*)", "kernel panic: {1}", guilty=_GUILTY_PANIC_CALLER),
)


def _trap(title: str, fmt: str, stack: StackSpec = _RIP_CT, alt: tuple[str, ...] = (),
          header: str = "") -> OopsGroup:
    # Trap groups: the header is the title without its trailing space unless given.
    return OopsGroup(header or title.rstrip(), (_fmt(title, fmt, alt=alt, stack=stack),))


def _plain(header: str, title: str, fmt: str, *, nostack: bool = True) -> OopsGroup:
    return OopsGroup(header, (_fmt(title, fmt, nostack=nostack),))


def _group(header: str, formats: tuple[OopsFormat, ...], *suppressions: str) -> OopsGroup:
    return OopsGroup(header, formats, tuple(_c(s) for s in suppressions))


OOPS_GROUPS: Final[tuple[OopsGroup, ...]] = (
    _group("BUG:", _BUG_FORMATS, "ODEBUG:", "Boot_DEBUG:", "xlog_status:", "DEBUG:",
           "BUG: no syscalls can create resource"),
    _group("WARNING:", _WARNING_FORMATS,
           "WARNING: /etc/ssh/moduli does not exist, using fixed modulus",
           "WARNING: workqueue cpumask: online intersect > possible intersect",
           "WARNING: [Tt]he mand mount option", r"WARNING: Unsupported flag value\(s\) of 0x%x in DT_FLAGS_1",
           "WARNING: Unprivileged eBPF is enabled with eIBRS",
           r"WARNING: fbcon: Driver '(.*)' missed to adjust virtual screen size "
           r"(\((?:\d+)x(?:\d+) vs\. (?:\d+)x(?:\d+)\))",
           "WARNING: See https.* for mitigation options.", "WARNING: kernel not compiled with CPU_SRSO",
           r"EXT4-[Ff][Ss](?: \(.*\))?:", "(?i)warning: .* uses (deprecated v2 capabilities|wireless extensions)",
           r"XFS \(\w+\): WARNING"),
    _group("INFO:", _INFO_FORMATS, "INFO: lockdep is turned off", "INFO: Stall ended before state dump start",
           "INFO: NMI handler", "INFO: recovery required on readonly filesystem", "(handler|interrupt).*took too long",
           "INFO: sys_.* is not present in /proc/kallsyms", "INFO: no syscalls can create resource",
           "rmt_storage:INFO:", "_INFO:"),
    _group("Unable to handle kernel", (
        _fmt("Unable to handle kernel (paging request|NULL pointer dereference|access to user memory)",
             "BUG: unable to handle kernel {1} in {2}", alt=("bad-access in {2}",), stack=_RIP_CT),)),
    _group("general protection fault", (
        _fmt("general protection fault.*:", "general protection fault in {1}", alt=("bad-access in {1}",),
             stack=_RIP_CT),), r"general protection fault .* error:\d+ in "),
    _trap("stack segment: ", "stack segment fault in {1}", header="stack segment: "),
    _group("Kernel panic", _PANIC_FORMATS),
    _trap("PANIC: double fault", "PANIC: double fault in {1}", _RIP_ONLY),
    _group("rust_kernel: panicked", (
        _fmt("rust_kernel: panicked", "{1} in {2}", report="rust_kernel: panicked at [^\n]*?\n(.+?)\n",
             stack=_stack(CALL_TRACE, STACK, skip=(re.escape("__rustc::rust_begin_unwind"),))),)),
    _group("kernel BUG", (
        _fmt("kernel BUG at mm/usercopy.c", "BUG: bad usercopy in {1}",
             stack=_stack(CALL_TRACE, STACK, skip=("usercopy", "__check"))),
        _fmt("kernel BUG at lib/list_debug.c", "BUG: corrupted list in {1}", alt=("bad-access in {1}",),
             stack=_CT),
        _fmt("kernel BUG at (.*)", "kernel BUG in {2}",
             stack=_stack(RIP_FRAME, CALL_TRACE, STACK, skip=("^skb_",))))),
    _plain("Kernel BUG", "Kernel BUG (.*)", "kernel BUG {1}", nostack=False),
    _plain("BUG kmalloc-", "BUG kmalloc-.*: Object already free", "BUG: Object already free", nostack=False),
    _trap("divide error: ", "divide error in {1}", _RIP_ONLY),
    _trap("divide_error: ", "divide error in {1}", _RIP_ONLY),
    _trap("invalid opcode: ", "invalid opcode in {1}", _RIP_ONLY),
    _trap("int3: ", "int3 in {1}"),
    _group("UBSAN:", (
        _fmt("UBSAN:", "UBSAN: undefined-behaviour in {1}", report="UBSAN: Undefined behaviour in",
             stack=_stack(CALL_TRACE, STACK, skip=("ubsan", "overflow"))),
        _fmt("UBSAN: array-index-out-of-bounds in", "UBSAN: array-index-out-of-bounds in {1}",
             alt=("bad-access in {1}",), stack=_stack(CALL_TRACE, STACK, skip=("ubsan", "overflow"))),
        _fmt("UBSAN:", "UBSAN: {1} in {2}", report="UBSAN: (.*?) in",
             stack=_stack(CALL_TRACE, STACK, skip=("ubsan", "overflow"))))),
    _group("Booting the kernel.", (_fmt("^Booting the kernel", "unexpected kernel reboot", nostack=True),),
           "Parsing ELF|Decompressing Linux|Unknown parameter '"),
    _plain("unregister_netdevice: waiting for", "unregister_netdevice: waiting for (?:.*) to become free",
           "unregister_netdevice: waiting for DEV to become free"),
    _plain("VFS: Close: file count is 0", "VFS: Close: file count is 0",
           "VFS: Close: file count is zero (use-after-free)"),
    _plain("VFS: Busy inodes after unmount", "VFS: Busy inodes after unmount",
           "VFS: Busy inodes after unmount (use-after-free)"),
    _trap("Internal error:", "Internal error in {1}", alt=("bad-access in {1}",)),
    _trap("Unhandled fault:", "Unhandled fault in {1}", alt=("bad-access in {1}",)),
    _trap("Alignment trap:", "Alignment trap in {1}"),
    _group("trusty: panic", (
        _fmt("trusty: panic.* ASSERT FAILED", "trusty: ASSERT FAILED: {1}",
             report=r"trusty: panic \(.*?\):(?: DEBUG)? ASSERT FAILED at \(.*?\): (.+)", nostack=True),
        _fmt("trusty: panic.* ASSERT FAILED.*: *(.*)", "trusty: ASSERT FAILED: {1}", corrupted=True),
        _fmt("trusty: panic", "trusty: panic: {1}", report=r"trusty: panic \(.*?\): (.+)", nostack=True))),
    _group("fatal error:", (_fmt("fatal error:", "go runtime error", nostack=True),),
           "ALSA", "fatal error: cannot create timer"),
    _group("SYZFAIL:", (_fmt("SYZFAIL:(.*)", "SYZFAIL:{1}", nostack=True),)),
    _group("SYZFATAL:", (_fmt("SYZFATAL:(.*)()", "SYZFATAL:{1}", alt=("SYZFATAL{2}",), nostack=True),)),
    _group("panic:", (
        _fmt("panic: Sentry detected .* stuck task", "panic: Sentry detected stuck tasks", nostack=True),
        _fmt("panic:(.*)", "panic:{1}", nostack=True)),
        "_panic:", "xlog_status:", r"ddb\.onpanic:", "evtlog_status:"),
)

#: Oops lines that may sit inside another report without starting a new one.
REPORT_START_IGNORES: Final = tuple(_c(p) for p in (
    "invalid opcode: 0000", "Kernel panic - not syncing", "unregister_netdevice: waiting for",
    "PANIC: double fault", "Internal error:"))
#: Informational messages that carry a stack: they end the text used for the title.
INFO_MESSAGES_WITH_STACK: Final = (
    "vmalloc: allocation failure:", "FAULT_INJECTION: forcing a failure", "FAULT_FLAG_ALLOW_RETRY missing")

SUPPRESSIONS: Final = tuple(_c(p) for p in (
    "panic: failed to start executor binary", "panic: executor failed: pthread_create failed",
    "panic: failed to create temp dir", "fatal error: unexpected signal during runtime execution",
    "signal SIGBUS: bus error", "SYZFAIL: SIGBUS", r"Out of memory: Kill process .* \(syz-executor\)",
    r"Out of memory: Kill process .* \(sshd\)", r"Killed process .* \(syz-executor\)",
    r"Killed process .* \(sshd\)", "lowmemorykiller: Killing 'syz-executor'", "lowmemorykiller: Killing 'sshd'",
    "INIT: PANIC: segmentation violation!", r"\*\*\* stack smashing detected \*\*\*: terminated",
    "fatal error: runtime: out of memory", "fatal error: runtime: cannot allocate memory",
    "fatal error: out of memory", "fatal error: newosproc", "panic: .*cannot allocate memory",
))

# ---------------------------------------------------------------------------------------------
# Title normalisation: each rule is applied until the string stops changing, in this order.

#: Every match of the IP, LINE and NUM rules holds an ASCII digit (``[0-9]`` or, under re.ASCII, ``\d``,
#: each required at least once): titles without digits, the common case, never compile them.
_DIGITS: Final = tuple("0123456789")

TITLE_REPLACEMENTS: Final = tuple((LazyPattern(p, re.ASCII, needles=n), r) for p, r, n in (
    (r"syz-executor\.?[0-9]+((/|:)[0-9]+)?", "syz-executor", None),
    (r"syzkaller[0-9]+((/|:)[0-9]+)?", "syzkaller", None),
    (r"([^a-zA-Z0-9])(?:0x)?[0-9a-f]{6,}", r"\1ADDR", None),
    (r"([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})", "IP", _DIGITS),
    (r"(\.\w+)(:[0-9]+)+", r"\1:LINE", _DIGITS),
    (r"([a-zA-Z][a-zA-Z0-9_.]+)\+0x[0-9a-z]+/0x[0-9a-z]+", r"\1", None),
    (r"CPU#[0-9]+", "CPU", None),
    (r"(\W)(\d+)(\W|\Z)", r"\1NUM\3", _DIGITS),
    (r"(\d+){7,}", "NUM", _DIGITS),
))

# ---------------------------------------------------------------------------------------------
# Crash type from the final title: the first row with a matching prefix wins ("" is unknown).

_KASAN_OOB = ("global-", "", "slab-", "stack-", "vmalloc-")
TITLE_TO_TYPE: Final[tuple[tuple[tuple[str, ...], str], ...]] = (
    (("KFENCE: use-after-free write",), "KFENCE-USE-AFTER-FREE-WRITE"),
    (("KFENCE: use-after-free read", "KFENCE: use-after-free"), "KFENCE-USE-AFTER-FREE-READ"),
    (("KFENCE: invalid write", "KFENCE: out-of-bounds write"), "KFENCE-WRITE"),
    (("KFENCE: invalid read", "KFENCE: out-of-bounds read", "KFENCE: out-of-bounds"), "KFENCE-READ"),
    (("KFENCE: memory corruption",), "KFENCE-MEMORY-CORRUPTION"),
    (("KFENCE: invalid free",), "KFENCE-INVALID-FREE"),
    (("KMSAN: uninit-value",), "KMSAN-UNINIT-VALUE"),
    (("KMSAN: kernel-infoleak-after-free", "KMSAN: kernel-usb-infoleak-after-free", "KMSAN: use-after-free"),
     "KMSAN-USE-AFTER-FREE-READ"),
    (("KMSAN: kernel-infoleak", "KMSAN: kernel-usb-infoleak"), "KMSAN-INFO-LEAK"),
    (("KASAN: null-ptr-deref Write",), "KASAN-NULL-POINTER-DEREFERENCE-WRITE"),
    (("KASAN: null-ptr-deref Read",), "KASAN-NULL-POINTER-DEREFERENCE-READ"),
    (("BUG: unable to handle kernel NULL pointer dereference in",), "NULL-POINTER-DEREFERENCE"),
    ((*(f"KASAN: {k}out-of-bounds Write" for k in _KASAN_OOB),
      "KASAN: user-memory-access Write", "KASAN: wild-memory-access Write"), "KASAN-WRITE"),
    ((*(f"KASAN: {k}out-of-bounds Read" for k in _KASAN_OOB),
      "KASAN: invalid-access Read", "KASAN: slab-out-of-bounds", "KASAN: stack-out-of-bounds",
        "KASAN: unknown-crash Read", "KASAN: user-memory-access Read", "KASAN: wild-memory-access Read",
        "KASAN: wild-memory-access"), "KASAN-READ"),
    (("KASAN: double-free or invalid-free", "KASAN: invalid-free"), "KASAN-INVALID-FREE"),
    (("KASAN: slab-use-after-free Write", "KASAN: use-after-free Write"), "KASAN-USE-AFTER-FREE-WRITE"),
    (("KASAN: slab-use-after-free Read", "KASAN: use-after-free Read", "KASAN: use-after-free"),
     "KASAN-USE-AFTER-FREE-READ"),
    (("BUG: corrupted list", "BUG: unable to handle kernel paging request"), "MEMORY_SAFETY_BUG"),
    (("WARNING: refcount bug",), "REFCOUNT_WARNING"),
    (("UBSAN: array-index-out-of-bounds",), "MEMORY_SAFETY_UBSAN"),
    (("KCSAN: data-race",), "KCSAN-DATARACE"),
    (("KCSAN: assert: race in",), "KCSAN-ASSERT"),
    (("BUG: bad unlock balance in", "BUG: held lock freed in", "BUG: rwlock", "BUG: spinlock",
      "BUG: still has locks held in", "BUG: using", "WARNING: bad unlock balance in", "WARNING: held lock freed in",
      "WARNING: lock held", "WARNING: locking bug in", "WARNING: nested lock was not taken in",
      "WARNING: still has locks held in", "WARNING: suspicious RCU usage in", "inconsistent lock state in",
      "possible deadlock in"), "LOCKDEP"),
    (("BUG: scheduling while atomic in", "BUG: sleeping function called from invalid context in"), "ATOMIC_SLEEP"),
    (("memory leak in",), "LEAK"),
    (("BUG: bad usercopy in", "kernel BUG"), "BUG"),
    (("WARNING in",), "WARNING"),
    (("BUG: stack guard page was hit in", "WARNING: corrupted", "WARNING: kernel stack frame pointer has bad value",
      "WARNING: kernel stack regs has bad"), ""),
    (("BUG: soft lockup in", "INFO: rcu detected stall in", "INFO: task can't die in", "INFO: task hung in"),
     "HANG"),
    (("Alignment trap in", "BUG: Object already free", "Internal error in", "PANIC: double fault",
      "Unhandled fault in", "VFS: Busy inodes after unmount (use-after-free)",
      "VFS: Close: file count is zero (use-after-free)", "divide error in", "general protection fault in",
      "go runtime error", "int3 in", "invalid opcode in", "kernel panic:", "kernel stack overflow", "panic:",
      "rust_kernel panicked", "stack segment fault in", "trusty:",
      "unregister_netdevice: waiting for DEV to become free"), "DoS"),
    (("no output from test machine",), "NO_OUTPUT"),
    (("unexpected kernel reboot",), "REBOOT"),
    (("SYZFAIL", "SYZFATAL:"), "SYZ_FAILURE"),
    (("WARNING:",), "WARNING"),
    (("BUG:", "INFO:"), ""),
    (("KASAN:",), "KASAN-UNKNOWN"),
    (("KFENCE:",), "KFENCE-UNKNOWN"),
    (("KMSAN:",), "KMSAN-UNKNOWN"),
    (("UBSAN:",), "UBSAN"),
    (("KCSAN:",), "KCSAN-UNKNOWN"),
)

#: Stall extractor anchors (substring search): the frame just above the first anchor is guilty.
STALL_ANCHORS: Final = Alternation((
    "process_one_work", "do_syscall_", "do_fast_syscall_", "sysenter_dispatch", "tracesys_phase2",
    "el0_svc_handler", "invoke_syscall", "ret_fast_syscall", "netif_receive_skb", "do_softirq",
    "call_timer_fn", "_run_timers", "run_timer_softirq", "hrtimer_run", "run_ksoftirqd", "smpboot_thread_fn",
    "^kthread$", "start_secondary", "cpu_startup_entry", "ret_from_fork", "vfs_write", "vfs_read",
    "vfs_iter_read", "vfs_iter_write", "do_iter_read", "do_iter_write", "call_read_iter", "call_write_iter",
    "new_sync_read", "new_sync_write", "vfs_ioctl", "ksys_ioctl", "compat_ioctl", "compat_sys_ioctl",
    "blkdev_driver_ioctl", "blkdev_ioctl", "^call_read_iter", "^call_write_iter", "do_iter_readv_writev",
    "^call_mmap", "mmap_region", "do_mmap", "do_dentry_open", "vfs_open", "^sock_sendmsg", "^sock_recvmsg",
    "^sock_release", "^__sock_release", "^setsockopt$", "kernel_setsockopt", "sock_common_setsockopt",
    "^listen$", "kernel_listen", "sk_common_release", "^sock_mmap", "^accept$", "kernel_accept",
    "^sock_do_ioctl", "^sock_ioctl", "^compat_sock_ioctl", "^nfnetlink_rcv_msg", "^rtnetlink_rcv_msg",
    "^netlink_dump", "^(sys_)?(socketpair|connect|ioctl)", "__do_fault", "do_page_fault", "^page_fault$",
    "__fput", "task_work_run", "exit_to_usermode", "smp_call_function", "tasklet_action", "tasklet_hi_action",
), re.ASCII)
