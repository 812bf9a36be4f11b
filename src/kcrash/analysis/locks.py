"""
kcrash.analysis.locks
=====================

Who waits for whom (``kcrash locks`` and the report's "Why it hung"): for every blocked task, the
frame that names its wait (``__mutex_lock``, ``rwsem_down_read_slowpath``, ``__down_common``,
``__wait_for_common``, ``folio_wait_bit_common``, ``synchronize_rcu`` …) and the lock it waits on,
found from the waiter structure on its stack: a stack word equal to the task's address is the
waiter's ``task`` member, the waiter's list link must be linked into a list whose one non-waiter
node is the lock's ``wait_list`` (:func:`~kcrash.helpers.linux.locking.lock_of_waiter`); the owner
the kernel records (``mutex->owner``, ``rw_semaphore->owner``; semaphores and completions record
none). The owners make a wait-for graph whose cycles are deadlocks. Lock-ups: a CPU the watchdog
names (``soft lockup - CPU#N stuck``, ``hard LOCKUP on cpu N``), or the panic CPU of a lock-up
panic, with the spinlock it spins on (a register of the interrupted spin-lock frame pointing at a
locked lock) and its holder where ``CONFIG_DEBUG_SPINLOCK`` records one. Not here: ``rt_mutex``,
``percpu_rw_semaphore``, ``ww_mutex`` contexts and wait queues other than the page waitqueues.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from kcrash import model
from kcrash.analysis import triage
from kcrash.errors import FaultError, KcrashError, TypeLookupError
from kcrash.helpers.layout import StructLayout
from kcrash.helpers.linux.locking import (
    LOCK_KINDS,
    lock_of_waiter,
    lock_waiters,
    mutex_owner,
    rwsem_owner,
    rwsem_reader_count,
    spinlock_holder_or_none,
    task_blocker_or_none,
)
from kcrash.helpers.linux.panic import panic_cpu_or_none, panic_message_or_none
from kcrash.helpers.linux.printk import PrintkRecord
from kcrash.helpers.linux.stack import kernel_unwinder, stack_trace
from kcrash.types.object import Object
from kcrash.types.program import Program
from kcrash.unwind import Trace as UnwindTrace

__all__ = ["analyze_locks", "find_deadlocks", "is_hang", "lock_waits", "lockups", "why_it_hung"]

# The frames that name a wait, innermost first; the first kind whose pattern a frame matches wins
# (rwsem before semaphore: both have "down" functions).
_WAIT_FRAMES = (
    ("mutex", re.compile(r"^(?:__mutex_lock|mutex_lock|__ww_mutex_lock|ww_mutex_lock)")),
    ("rwsem", re.compile(r"^(?:rwsem_down_(?:read|write)|__down_(?:read|write)|down_(?:read|write))")),
    ("semaphore", re.compile(r"^(?:__down_common|__down|down)(?:_killable|_interruptible|_timeout)?(?:\.|$)")),
    ("completion", re.compile(r"^(?:__wait_for_common|wait_for_common|wait_for_completion)")),
    (
        "page",
        re.compile(
            r"^(?:folio_wait_bit_common|__folio_lock|folio_wait_bit|__lock_page|wait_on_page_bit"
            r"|folio_wait_writeback|wait_on_page_writeback)"
        ),
    ),
)
# a completion waited for inside these is an RCU grace period (wait_rcu_gp's rcu_synchronize)
_RCU_FRAMES = re.compile(
    r"^(?:synchronize_rcu|synchronize_srcu|__synchronize_srcu|wait_rcu_gp|__wait_rcu_gp"
    r"|rcu_barrier|synchronize_sched|synchronize_net)"
)
_SPIN_FRAMES = re.compile(
    r"^(?:native_queued_spin_lock_slowpath|queued_spin_lock_slowpath|__pv_queued_spin_lock"
    r"|_raw_spin_lock|do_raw_spin_lock|queued_spin_lock|_raw_read_lock|_raw_write_lock"
    r"|queued_read_lock_slowpath|queued_write_lock_slowpath)"
)
_LOCKUP_LINE = re.compile(rb"soft lockup - CPU#(\d+) stuck|hard LOCKUP on cpu (\d+)")
_LOCKUP_PANIC = re.compile(r"softlockup|soft lockup|Hard LOCKUP|hardlockup")
# kernel/hung_task.c: "hung_task: blocked tasks"; RCU stall panics (panic_on_rcu_stall)
_HANG_PANIC = re.compile(r"hung_task: blocked tasks|RCU Stall|softlockup|soft lockup|Hard LOCKUP|hardlockup")
#: the task states whose stacks are searched for a wait (running, idle, dead and zombie tasks wait on nothing)
_WAITING_STATES = frozenset("DST")
_REGISTER_ORDER = (
    "rdi",
    "rbx",
    "rsi",
    "rdx",
    "rcx",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
    "rbp",
    "rax",
)
_MAX_CHAIN = 10_000
_KERNEL_HALF = 1 << 63


@dataclass(frozen=True, slots=True)
class _Tasks:
    # every task's row and stack range, by task address
    rows: dict[int, model.TaskRow]
    stacks: dict[int, tuple[int, int]]

    def on_own_stack(self, waiter: int, task: int) -> bool:
        stack = self.stacks.get(task)
        return stack is not None and stack[0] <= waiter < stack[1]


def _tasks(prog: Program, rows: Iterable[model.TaskRow]) -> _Tasks:
    layout = StructLayout(prog.type("struct task_struct"), ["stack"])
    size = kernel_unwinder(prog).thread_size
    by_address, stacks = {}, {}
    for row in rows:
        by_address[row.task] = row
        try:
            base = layout.read(prog, row.task).value("stack")
        except FaultError:
            continue
        stacks[row.task] = (base, base + size)
    return _Tasks(by_address, stacks)


def _wait_kind(frames: Sequence[model.Frame]) -> tuple[str, str] | None:
    # (kind, the frame's text) of the innermost frame naming a wait
    for i, frame in enumerate(frames):
        name = frame.function or ""
        for kind, pattern in _WAIT_FRAMES:
            if pattern.match(name):
                if kind == "completion" and any(_RCU_FRAMES.match(f.function or "") for f in frames[i : i + 6]):
                    return "rcu", frame.text
                return kind, frame.text
        if _RCU_FRAMES.match(name):
            return "rcu", frame.text
    return None


def _symbol(prog: Program, address: int) -> str | None:
    found = prog.symbolize_or_none(address)
    if found is None:
        return None
    symbol, offset = found
    return symbol.name if offset == 0 else f"{symbol.name}+{offset:#x}"


def _stack_words(prog: Program, tasks: _Tasks, task: int, sp: int) -> list[tuple[int, int]]:
    # (address, value) of the task's stack words from sp (or the stack base) to its top
    lo, hi = tasks.stacks.get(task, (0, 0))
    start = sp if lo <= sp < hi else lo
    start &= ~7
    try:
        data = prog.read(start, hi - start)
    except FaultError:
        return []
    return [(start + i, int.from_bytes(data[i : i + 8], "little")) for i in range(0, len(data) - 7, 8)]


@dataclass(frozen=True, slots=True)
class _Found:
    lock: int
    waiter: int


def _find_lock(prog: Program, tasks: _Tasks, kind: str, task: int, words: list[tuple[int, int]]) -> _Found | None:
    k = LOCK_KINDS[kind]
    task_offset = prog.type(k.waiter_type).walk_path(k.task)[0] // 8
    candidates = list(dict.fromkeys(value for _, value in words if value >= _KERNEL_HALF))
    for address, value in words:
        if value != task:
            continue
        waiter = address - task_offset
        lock = lock_of_waiter(prog, kind, waiter, tasks.on_own_stack, candidates=candidates)
        if lock is not None:
            return _Found(lock, waiter)
    return None


def _blocker(prog: Program, kind: str, task: int) -> _Found | None:
    # the lock the hung-task detector records (task->blocker), when the waiter search found none
    blocker = task_blocker_or_none(prog, task)
    if blocker is None or blocker[0] != kind:
        return None
    return _Found(blocker[2], 0)


def _find_page(prog: Program, task: int, words: list[tuple[int, int]]) -> _Found | None:
    # struct wait_page_queue { folio (page before v5.16); bit_nr; wait_queue_entry wait } on the
    # stack, wait.private the task and wait.func wake_page_function (mm/filemap.c)
    try:
        private = prog.type("struct wait_page_queue").walk_path("wait.private")[0] // 8
        func = prog.type("struct wait_page_queue").walk_path("wait.func")[0] // 8
    except TypeLookupError:
        return None
    values = dict(words)
    for address, value in words:
        if value == task and _symbol(prog, values.get(address - private + func, 0)) == "wake_page_function":
            queue = address - private
            return _Found(values.get(queue, 0), queue)
    return None


#: what the kernel records instead of an owner, for the kinds it records none for
_NO_OWNER = {
    "rcu": "an RCU grace period has no owner: every CPU must pass a quiescent state",
    "page": "a page lock records no owner",
}


def _owner(prog: Program, tasks: _Tasks, kind: str, lock: int | None) -> tuple[model.TaskRow | None, str | None]:
    if kind in _NO_OWNER:
        return None, _NO_OWNER[kind]
    if lock is None:
        return None, "the lock could not be found"
    try:
        return _recorded_owner(prog, tasks, kind, lock)
    except FaultError as exc:
        return None, f"the lock is unreadable at {exc.address:#x}"


def _recorded_owner(prog: Program, tasks: _Tasks, kind: str, lock: int) -> tuple[model.TaskRow | None, str | None]:
    if kind == "mutex":
        return _owner_row(tasks, mutex_owner(prog, lock), "unlocked (owner is 0)")
    if kind == "rwsem":
        owner, reader_owned = rwsem_owner(prog, lock)
        readers, writer = rwsem_reader_count(prog, lock)
        if writer:
            return _owner_row(tasks, owner, "writer-locked, owner not recorded")
        last = tasks.rows.get(owner)
        hint = f"; the last reader was {last.comm} (pid {last.pid})" if reader_owned and last else ""
        return None, f"reader-owned: {readers} reader(s), no single owner{hint}"
    if kind == "semaphore":
        return None, _semaphore_note(prog, tasks, lock)
    if kind == "completion":
        done = int.from_bytes(prog.read(lock, 4), "little")
        return None, f"a completion records no owner (done {done}): whoever should call complete() has not"
    return None, None


def _semaphore_note(prog: Program, tasks: _Tasks, lock: int) -> str:
    sem = prog.type("struct semaphore")
    count = int.from_bytes(prog.read(lock + sem.walk_path("count")[0] // 8, 4), "little")
    note = f"a semaphore records no owner (count {count})"
    # CONFIG_DETECT_HUNG_TASK_BLOCKER (v6.16) keeps the last task to take it in last_holder
    if sem.has_member("last_holder"):
        last = tasks.rows.get(int.from_bytes(prog.read(lock + sem.walk_path("last_holder")[0] // 8, 8), "little"))
        if last is not None:
            note += f"; the last holder was {last.comm} (pid {last.pid})"
    return note


def _owner_row(tasks: _Tasks, owner: int, none: str) -> tuple[model.TaskRow | None, str | None]:
    if owner == 0:
        return None, none
    row = tasks.rows.get(owner)
    return (row, None) if row is not None else (None, f"owner {owner:#x} is not one of the dump's tasks")


def _lock_wait(prog: Program, tasks: _Tasks, row: model.TaskRow, trace: model.Trace) -> model.LockWait | None:
    kind_frame = _wait_kind(trace.frames)
    if kind_frame is None:
        if row.state != "D":
            return None
        return model.LockWait(
            row,
            "unknown",
            None,
            None,
            None,
            None,
            (),
            None,
            "no frame names a lock or wait primitive",
            (),
            triage.blocked_function([trace]),
            trace,
        )
    kind, frame = kind_frame
    words = _stack_words(prog, tasks, row.task, trace.frames[0].sp if trace.frames else 0)
    found = _find(prog, tasks, kind, row.task, words)
    lock = found.lock if found else None
    owner, note = _owner(prog, tasks, kind, lock)
    return model.LockWait(
        row,
        kind,
        lock,
        _symbol(prog, lock) if lock else None,
        _rwsem_mode(prog, kind, found),
        found.waiter if found else None,
        _waiter_pids(prog, tasks, kind, lock),
        owner,
        note,
        (),
        frame,
        trace,
    )


def _find(prog: Program, tasks: _Tasks, kind: str, task: int, words: list[tuple[int, int]]) -> _Found | None:
    try:
        if kind == "page":
            return _find_page(prog, task, words)
        if kind not in LOCK_KINDS:
            return None
        return _find_lock(prog, tasks, kind, task, words) or _blocker(prog, kind, task)
    except (FaultError, TypeLookupError):
        return None


def _rwsem_mode(prog: Program, kind: str, found: _Found | None) -> str | None:
    # rwsem_waiter.type: RWSEM_WAITING_FOR_WRITE (0) or RWSEM_WAITING_FOR_READ (1), kernel/locking/rwsem.c
    if kind != "rwsem" or found is None or not found.waiter:
        return None
    offset = prog.type("struct rwsem_waiter").walk_path("type")[0] // 8
    return "read" if int.from_bytes(prog.read(found.waiter + offset, 4), "little") else "write"


def _waiter_pids(prog: Program, tasks: _Tasks, kind: str, lock: int | None) -> tuple[int, ...]:
    if lock is None or kind not in LOCK_KINDS:
        return ()
    try:
        walk = lock_waiters(prog, kind, lock)
    except (FaultError, TypeLookupError):
        return ()
    return tuple(tasks.rows[w.task].pid if w.task in tasks.rows else -1 for w in walk.waiters)


def lock_waits(
    prog: Program, rows: Sequence[model.TaskRow], traces: Mapping[int, model.Trace] | None = None
) -> tuple[model.LockWait, ...]:
    """What every blocked task waits on: every D-state task, and every sleeping (S, T) task whose
    stack names a lock or wait primitive, with the owner chains filled in.

    :param rows: every task (:func:`~kcrash.analysis.triage.task_rows`)
    :param traces: the tasks' symbolized stacks by task address where already unwound (the
        report's); the others are unwound here
    """
    tasks = _tasks(prog, rows)
    waits = []
    for row in rows:
        if row.active or row.state not in _WAITING_STATES or row.pid == 0:
            continue
        trace = (traces or {}).get(row.task) or _trace_or_none(prog, row.task)
        wait = _lock_wait(prog, tasks, row, trace) if trace is not None else None
        if wait is not None:
            waits.append(wait)
    return _with_chains(waits)


def _trace_or_none(prog: Program, task: int) -> model.Trace | None:
    try:
        raw = stack_trace(prog, Object(prog, prog.pointer_type("struct task_struct"), task), scan=True)
    except KcrashError:
        return None
    return triage.symbolize_trace(prog, raw)


def _with_chains(waits: list[model.LockWait]) -> tuple[model.LockWait, ...]:
    by_task = {w.task.task: w for w in waits}
    return tuple(replace(w, chain=_chain(w, by_task)) for w in waits)


def _chain(wait: model.LockWait, by_task: dict[int, model.LockWait]) -> tuple[int, ...]:
    # pids from the waiting task along the owners, ending at an owner that waits on nothing known
    # or at the first task seen twice (a cycle)
    chain, seen, current = [wait.task.pid], {wait.task.task}, wait
    while current.owner is not None and len(chain) < _MAX_CHAIN:
        chain.append(current.owner.pid)
        if current.owner.task in seen or current.owner.task not in by_task:
            break
        seen.add(current.owner.task)
        current = by_task[current.owner.task]
    return tuple(chain)


def find_deadlocks(waits: Sequence[model.LockWait]) -> tuple[model.Deadlock, ...]:
    """The cycles of the wait-for graph (task → the owner of the lock it waits on), each once,
    starting at its lowest pid."""
    by_task = {w.task.task: w for w in waits}
    found: dict[frozenset[int], model.Deadlock] = {}
    for wait in waits:
        path: list[model.LockWait] = []
        index: dict[int, int] = {}
        current: model.LockWait | None = wait
        while current is not None and current.task.task not in index and len(path) < _MAX_CHAIN:
            index[current.task.task] = len(path)
            path.append(current)
            current = by_task.get(current.owner.task) if current.owner is not None else None
        if current is None or current.task.task not in index:
            continue
        cycle = path[index[current.task.task] :]
        first = min(range(len(cycle)), key=lambda i: cycle[i].task.pid)
        found.setdefault(frozenset(w.task.task for w in cycle), model.Deadlock(tuple(cycle[first:] + cycle[:first])))
    return tuple(found.values())


def is_hang(panic_message: str | None) -> bool:
    """Whether a panic message is a hung-task, lock-up or RCU-stall panic's."""
    return bool(panic_message and _HANG_PANIC.search(panic_message))


def lockups(prog: Program, records: Sequence[PrintkRecord], rows: Sequence[model.TaskRow]) -> tuple[model.Lockup, ...]:
    """The CPUs stuck in the kernel: those the lock-up watchdog names in the log, else the panic
    CPU when the panic is a lock-up's."""
    cpus: list[int] = []
    for record in records:
        match = _LOCKUP_LINE.search(record.text)
        if match and int(match.group(1) or match.group(2)) not in cpus:
            cpus.append(int(match.group(1) or match.group(2)))
    message = panic_message_or_none(records) or ""
    panic_cpu = panic_cpu_or_none(prog)
    if not cpus and panic_cpu is not None and _LOCKUP_PANIC.search(message):
        cpus.append(panic_cpu)
    tasks = _tasks(prog, rows)
    return tuple(_lockup(prog, tasks, cpu) for cpu in cpus if 0 <= cpu < kernel_unwinder(prog).num_cpus())


def _lockup(prog: Program, tasks: _Tasks, cpu: int) -> model.Lockup:
    row = triage.cpu_task_row(prog, cpu)
    try:
        raw = stack_trace(prog, cpu, scan=True)
    except KcrashError as exc:
        return model.Lockup(cpu, row, "busy", None, None, None, None, None, model.Trace((), f"cannot unwind: {exc}"))
    trace = triage.symbolize_trace(prog, raw)
    function = triage.interrupted_function(trace.frames)
    spin = next((i for i, f in enumerate(trace.frames) if _SPIN_FRAMES.match(f.function or "")), None)
    if spin is None:
        return model.Lockup(cpu, row, "busy", function, None, None, None, None, trace)
    lock = _spun_lock(prog, raw, trace.frames)
    holder, note = _holder(prog, tasks, lock)
    return model.Lockup(
        cpu,
        row,
        "spinlock",
        trace.frames[spin].function,
        lock,
        _symbol(prog, lock) if lock is not None else None,
        holder,
        note,
        trace,
    )


def _spun_lock(prog: Program, raw: UnwindTrace, frames: Sequence[model.Frame]) -> int | None:
    # The interrupted spin-lock frame's registers (the lock pointer is the first argument, rdi, in
    # the slow path): the first one pointing at a locked lock, a named one preferred.
    for raw_frame, frame in zip(raw.frames, frames, strict=False):
        if raw_frame.regs is None or not _SPIN_FRAMES.match(frame.function or ""):
            continue
        values = [v for name in _REGISTER_ORDER if (v := raw_frame.regs.get_or_none(name)) is not None]
        locked = [v for v in values if v >= 1 << 63 and _locked(prog, v)]
        named = [v for v in locked if _symbol(prog, v) is not None and "+" not in (_symbol(prog, v) or "+")]
        if named or locked:
            return (named or locked)[0]
    return None


def _locked(prog: Program, address: int) -> bool:
    # qspinlock: the locked byte (bits 0-7 of val) is set while the lock is held
    try:
        return prog.read(address, 1)[0] != 0
    except FaultError:
        return False


def _holder(prog: Program, tasks: _Tasks, lock: int | None) -> tuple[model.TaskRow | None, str | None]:
    if lock is None:
        return None, "the lock's address is not in the spinning frame's registers"
    try:
        held = spinlock_holder_or_none(prog, lock)
    except FaultError as exc:
        return None, f"the lock is unreadable at {exc.address:#x}"
    if held is None:
        return None, "a qspinlock records no holder (no CONFIG_DEBUG_SPINLOCK): look for a stack that took it"
    row = tasks.rows.get(held[0])
    return (row, None) if row else (None, f"holder {held[0]:#x} (CPU {held[1]}) is not one of the dump's tasks")


def _who(row: model.TaskRow | None) -> str:
    return f"{row.comm} (pid {row.pid})" if row is not None else "nobody recorded"


def _lock_text(wait: model.LockWait) -> str:
    where = wait.symbol or (f"{wait.lock:#x}" if wait.lock is not None else "an unknown lock")
    return f"{wait.kind} {where}" + (f" ({wait.mode})" if wait.mode else "")


def why_it_hung(
    deadlocks: Sequence[model.Deadlock], found: Sequence[model.Lockup], waits: Sequence[model.LockWait]
) -> tuple[str, ...]:
    """One sentence per culprit: deadlocks, then lock-ups, then the owners many tasks wait for."""
    why = []
    for deadlock in deadlocks:
        steps = "; ".join(f"{_who(w.task)} waits for {_lock_text(w)} held by {_who(w.owner)}" for w in deadlock.waits)
        name = "AB-BA deadlock" if len(deadlock.waits) == 2 else f"deadlock of {len(deadlock.waits)} tasks"
        why.append(f"{name}: {steps}")
    for lockup in found:
        if lockup.kind == "spinlock":
            lock = lockup.symbol or (f"{lockup.lock:#x}" if lockup.lock is not None else "an unknown lock")
            holder = _who(lockup.holder) if lockup.holder else lockup.holder_note
            why.append(
                f"CPU {lockup.cpu}, {_who(lockup.task)}, spins on spinlock {lock} in {lockup.function}; "
                f"holder: {holder}"
            )
        else:
            why.append(f"CPU {lockup.cpu}, {_who(lockup.task)}, is stuck in {lockup.function or 'the kernel'}")
    in_cycle = {w.task.task for d in deadlocks for w in d.waits}
    for wait in waits:
        if wait.task.task not in in_cycle and wait.kind != "unknown":
            owner = f"held by {_who(wait.owner)}" if wait.owner else (wait.owner_note or "")
            why.append(f"{_who(wait.task)} [{wait.task.state}] waits for {_lock_text(wait)}, {owner}")
    return tuple(why)


def analyze_locks(
    prog: Program,
    rows: Sequence[model.TaskRow] | None = None,
    records: Sequence[PrintkRecord] | None = None,
    traces: Mapping[int, model.Trace] | None = None,
) -> model.LockAnalysis:
    """Everything ``kcrash locks`` shows: deadlocks, lock-ups, every blocked task's wait and the
    stacks of the owners that are not blocked themselves (``rows``, ``records`` and ``traces``,
    the tasks' stacks by task address, are read from the dump when not given)."""
    notes = []
    if rows is None:
        rows, truncated = triage.task_rows(prog)
        if truncated:
            notes.append(f"task list truncated: {truncated}")
    if records is None:
        try:
            records = triage.printk_records(prog)
        except KcrashError as exc:
            records = []
            notes.append(f"no kernel log, lock-ups are looked for on the panic CPU only: {exc}")
    waits = lock_waits(prog, rows, traces)
    deadlocks = find_deadlocks(waits)
    found = lockups(prog, records, rows)
    waiting = {w.task.task for w in waits}
    owners = {w.owner.task: w.owner for w in waits if w.owner is not None and w.owner.task not in waiting}
    owner_traces = tuple(
        triage.task_backtrace(prog, Object(prog, prog.pointer_type("struct task_struct"), task)) for task in owners
    )
    return model.LockAnalysis(why_it_hung(deadlocks, found, waits), deadlocks, found, waits, owner_traces, tuple(notes))
