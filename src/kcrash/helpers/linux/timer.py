"""
kcrash.helpers.linux.timer
==========================

Kernel timers: the per-CPU timer wheels (``kernel/time/timer.c``: ``timer_bases``, an array of
``struct timer_base`` whose ``vectors`` are ``hlist_head`` buckets of ``struct timer_list``) and
the per-CPU high-resolution timers (``kernel/time/hrtimer.c``, ``include/linux/hrtimer_defs.h``:
``hrtimer_bases``, a ``struct hrtimer_cpu_base`` whose ``clock_base[]`` each keep their
``struct hrtimer`` in the ``active`` timerqueue, an rbtree ordered by expiry). Named as drgn's
``drgn.helpers.linux.timer`` (:func:`timer_base_names`, :func:`timer_base_for_each`,
:func:`hrtimer_clock_base_for_each`), plus :func:`cpu_timer_bases` and :func:`cpu_hrtimer_bases`,
which read every pending timer of a CPU with its expiry and function (what crash's ``timer`` and
``timer -r`` print) in few reads. Every CPU of ``__cpu_possible_mask`` has its bases (after a panic
the stopped CPUs are offline but their timers are still queued). Bucket and tree walks are bounded
and record why they stopped in ``truncated``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from kcrash.errors import FaultError, TypeLookupError
from kcrash.helpers.layout import StructLayout
from kcrash.helpers.linux.list import DEFAULT_LIMIT, ListWalk, hlist_for_each_entry
from kcrash.helpers.linux.rbtree import rbtree_inorder_for_each_entry
from kcrash.helpers.memo import per_program
from kcrash.types.model import Type, TypeKind
from kcrash.types.object import Object, offsetof
from kcrash.types.percpu import per_cpu
from kcrash.types.program import Program

__all__ = [
    "HrTimer",
    "HrtimerClockBase",
    "Timer",
    "TimerBase",
    "cpu_hrtimer_bases",
    "cpu_timer_bases",
    "get_jiffies",
    "hrtimer_clock_base_for_each",
    "symbol_text",
    "timer_base_for_each",
    "timer_base_names",
]



@dataclass(frozen=True, slots=True)
class Timer:
    """A pending ``struct timer_list`` (``include/linux/timer.h``).

    :param address: the ``struct timer_list *``
    :param expires: ``timer->expires`` (jiffies)
    :param function: ``timer->function``
    :param function_name: the function's symbol (``name+0x10``; None where no symbol covers it)

    >>> [t.function_name for t in cpu_timer_bases(prog, 0)[0].timers][:1]
    ['mce_timer_fn']
    """

    address: int
    expires: int
    function: int
    function_name: str | None


@dataclass(frozen=True, slots=True)
class TimerBase:
    """One ``struct timer_base`` of a CPU, with its pending timers.

    :param cpu: the CPU
    :param name: its name (``BASE_STD``, ``BASE_LOCAL``...; see :func:`timer_base_names`)
    :param address: the ``struct timer_base *``
    :param clk: ``base->clk`` (jiffies)
    :param next_expiry: ``base->next_expiry`` (jiffies)
    :param timers: its timers by expiry
    :param truncated: why a bucket walk stopped early, None if none did

    >>> [(b.name, len(b.timers)) for b in cpu_timer_bases(prog, 0)]
    [('BASE_LOCAL', 1), ('BASE_GLOBAL', 7), ('BASE_DEF', 10)]
    """

    cpu: int
    name: str
    address: int
    clk: int
    next_expiry: int
    timers: tuple[Timer, ...]
    truncated: str | None


@dataclass(frozen=True, slots=True)
class HrTimer:
    """A queued ``struct hrtimer`` (``include/linux/hrtimer.h``).

    :param address: the ``struct hrtimer *``
    :param softexpires: ``_softexpires`` (ns of its clock)
    :param expires: ``node.expires`` (ns of its clock)
    :param function: ``timer->function``
    :param function_name: the function's symbol, None where no symbol covers it

    >>> [t.function_name for t in cpu_hrtimer_bases(prog, 0)[0].timers][:1]
    ['tick_nohz_handler']
    """

    address: int
    softexpires: int
    expires: int
    function: int
    function_name: str | None


@dataclass(frozen=True, slots=True)
class HrtimerClockBase:
    """One ``struct hrtimer_clock_base`` of a CPU's ``hrtimer_bases``, with its queued hrtimers.

    :param cpu: the CPU
    :param index: its index in ``clock_base[]``
    :param name: its name (``HRTIMER_BASE_MONOTONIC``...)
    :param address: the ``struct hrtimer_clock_base *``
    :param offset: ``base->offset`` (ns from monotonic time)
    :param timers: its timers in expiry order
    :param truncated: why the walk stopped early, None if it did not

    >>> [(b.name, len(b.timers)) for b in cpu_hrtimer_bases(prog, 0)][:2]
    [('HRTIMER_BASE_MONOTONIC', 9), ('HRTIMER_BASE_REALTIME', 0)]
    """

    cpu: int
    index: int
    name: str
    address: int
    offset: int
    timers: tuple[HrTimer, ...]
    truncated: str | None


def symbol_text(prog: Program, address: int) -> str | None:
    """Return ``name`` or ``name+0x10`` for a code address (a timer's or handler's function).

    :param prog: the program
    :param address: a code address
    :return: the text, None when no symbol of the kernel or a module covers it

    >>> symbol_text(prog, prog.symbol_address("process_timeout"))
    'process_timeout'
    """
    found = prog.symbolize_or_none(address) if address else None
    if found is None:
        return None
    symbol, offset = found
    return f"{symbol.name}+{offset:#x}" if offset else symbol.name


def get_jiffies(prog: Program) -> int:
    """Return ``jiffies_64`` (``jiffies`` is its alias on 64-bit kernels).

    :param prog: the program
    :return: the jiffies count
    :raises FaultError: if it cannot be read

    >>> get_jiffies(prog)
    4294900753
    """
    return prog.read_u64(prog.symbol_address("jiffies_64"))


@per_program
def timer_base_names(prog: Program) -> Sequence[str]:
    """Return the names of the timer bases of each CPU, in ``timer_bases[]`` order, as drgn's.

    ``NR_BASES`` from the BTF array's length: one base without ``CONFIG_NO_HZ_COMMON``
    (``BASE_STD``, ``BASE_LOCAL`` since v6.9), else ``BASE_STD``/``BASE_DEF`` before v6.9 and
    ``BASE_LOCAL``/``BASE_GLOBAL``/``BASE_DEF`` since (commit 83a665dc99a7).

    :param prog: the program
    :return: the names

    >>> timer_base_names(prog)
    ('BASE_LOCAL', 'BASE_GLOBAL', 'BASE_DEF')
    """
    return _base_names(prog)


def _base_names(prog: Program) -> tuple[str, ...]:
    count = _timer_bases_type(prog).strip_typedefs().length or 1
    if count == 3:
        # Since Linux kernel commit 83a665dc99a7 (v6.9) pinned timers have their own base
        # (CONFIG_NO_HZ_COMMON=y).
        return ("BASE_LOCAL", "BASE_GLOBAL", "BASE_DEF")
    if count == 2:
        return ("BASE_STD", "BASE_DEF")
    # CONFIG_NO_HZ_COMMON=n: commit 21927fc89e5f (v6.9) added struct timer_events with the rename.
    return ("BASE_LOCAL",) if prog.find_type_or_none("struct timer_events") else ("BASE_STD",)


def _timer_bases_type(prog: Program) -> Type:
    # ``struct timer_base timer_bases[NR_BASES]``. Where BTF has no entry for the per-CPU variable
    # (the lab's 5.10), NR_BASES is the symbol's extent (kallsyms: up to the next symbol) over the
    # struct size, 1..3; without a symbol size, 2 (CONFIG_NO_HZ_COMMON, 3 since v6.9's struct
    # timer_events).
    try:
        return prog.variable_type("timer_bases")
    except TypeLookupError:
        pass
    base = prog.type("struct timer_base")
    count = 3 if prog.find_type_or_none("struct timer_events") else 2
    if prog.symbol_table is not None:
        size = prog.get_symbol_by_name("timer_bases").size
        count = min(max(size // base.sizeof(), 1), 3) if size else count
    return prog.array_type(base, count)


def _percpu_variable(prog: Program, name: str, type: Type, cpu: int) -> Object:
    # per_cpu(name, cpu), typed by ``type`` when BTF has no VAR entry for the variable
    return per_cpu(prog, Object(prog, type, address=prog.symbol_address(name)), cpu)


def timer_base_for_each(base: Object, *, limit: int = DEFAULT_LIMIT) -> Iterator[Object]:
    """Iterate over every timer on a timer base.

    From the ``base->vectors[]`` hash lists of ``struct timer_list`` (linked by ``entry``), in bucket
    order, not expiry order.

    :param base: ``struct timer_base *``
    :param limit: the most timers per bucket
    :return: an iterator of ``struct timer_list *``
    :raises FaultError: if the base cannot be read

    >>> base = per_cpu(prog, "timer_bases", 0)[0].address_of_()
    >>> [symbol_text(prog, int(t.function)) for t in timer_base_for_each(base)]
    ['mce_timer_fn']
    """
    for _, walk in _buckets(base, limit):
        yield from walk


def _buckets(base: Object, limit: int) -> Iterator[tuple[int, ListWalk]]:
    # (index, walk) of each non-empty bucket of base->vectors, read in one piece.
    prog = base.prog_
    vectors = base.vectors
    raw = vectors.to_bytes_()
    head_type = prog.pointer_type("struct hlist_head")
    start = int(base) + offsetof(base.type_.strip_typedefs().type.strip_typedefs(), "vectors")
    for i in range(len(raw) // 8):
        if int.from_bytes(raw[i * 8:i * 8 + 8], "little"):
            head = Object(prog, head_type, start + i * 8)
            yield i, hlist_for_each_entry("struct timer_list", head, "entry", limit=limit)


@per_program
def _timer_layout(prog: Program) -> StructLayout:
    return StructLayout(prog.type("struct timer_list"), ("expires", "function"))


def _timer(prog: Program, address: int) -> Timer:
    raw = _timer_layout(prog).read(prog, address)
    function = raw.value("function")
    return Timer(address, raw.value("expires"), function, symbol_text(prog, function))


def _timer_base(prog: Program, cpu: int, name: str, base: Object, limit: int) -> TimerBase:
    timers: list[Timer] = []
    truncated: list[str] = []
    for index, walk in _buckets(base.address_of_(), limit):
        try:
            timers.extend(_timer(prog, int(t)) for t in walk)
        except FaultError as exc:
            truncated.append(f"bucket {index}: unreadable timer at {exc.address:#x}")
        if walk.truncated:
            truncated.append(f"bucket {index}: {walk.truncated}")
    timers.sort(key=lambda t: (t.expires, t.address))
    return TimerBase(cpu, name, int(base.address_of_()), int(base.clk), int(base.next_expiry),
                     tuple(timers), "; ".join(truncated) or None)


def cpu_timer_bases(prog: Program, cpu: int, *, limit: int = DEFAULT_LIMIT) -> list[TimerBase]:
    """Return every timer base of a CPU (per-CPU ``timer_bases``) with its pending timers, sorted by expiry.

    :param prog: the program
    :param cpu: a possible CPU
    :param limit: the most timers per bucket
    :return: the bases, in ``timer_bases[]`` order
    :raises FaultError: if the per-CPU bases cannot be read

    >>> [(b.name, len(b.timers)) for b in cpu_timer_bases(prog, 0)]
    [('BASE_LOCAL', 1), ('BASE_GLOBAL', 7), ('BASE_DEF', 10)]
    """
    bases = _percpu_variable(prog, "timer_bases", _timer_bases_type(prog), cpu)
    if bases.type_.strip_typedefs().kind is not TypeKind.ARRAY:
        return [_timer_base(prog, cpu, timer_base_names(prog)[0], bases, limit)]
    return [_timer_base(prog, cpu, name, bases[i], limit) for i, name in enumerate(timer_base_names(prog))]


# -- hrtimers -------------------------------------------------------------------------------------

def hrtimer_clock_base_for_each(clock_base: Object, *, limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Iterate over every hrtimer of a clock base in expiry order (the ``active`` timerqueue rbtree).

    :param clock_base: ``struct hrtimer_clock_base *``
    :param limit: the most timers to yield
    :return: a bounded :class:`~kcrash.helpers.linux.list.ListWalk` of ``struct hrtimer *``
    :raises FaultError: if the clock base cannot be read

    >>> cpu_base = per_cpu(prog, "hrtimer_bases", 0)
    >>> [t.function for t in hrtimer_clock_base_for_each(cpu_base.clock_base[1].address_of_())]
    []
    """
    active = clock_base.active
    try:
        root = active.rb_root  # struct rb_root_cached, since commit 511885d7061e (v4.20)
    except (AttributeError, TypeLookupError):
        root = active.head
    return rbtree_inorder_for_each_entry("struct hrtimer", root.address_of_(), "node.node", limit=limit)


@per_program
def _hrtimer_layout(prog: Program) -> StructLayout:
    return StructLayout(prog.type("struct hrtimer"), {"expires": "node.expires", "softexpires": "_softexpires",
                                                      "function": "function"})


def _hrtimer(prog: Program, address: int) -> HrTimer:
    raw = _hrtimer_layout(prog).read(prog, address)
    function = raw.value("function")
    return HrTimer(address, raw.value("softexpires"), raw.value("expires"), function, symbol_text(prog, function))


def _clock_names(prog: Program) -> dict[int, str]:
    t = prog.find_type_or_none("enum hrtimer_base_type")
    return {e.value: e.name for e in (t.enumerators or ())} if t is not None else {}


def _clock_base(prog: Program, cpu: int, index: int, name: str, base: Object, limit: int) -> HrtimerClockBase:
    offset = int(base.offset)  # an unreadable clock base raises here, not as a truncated walk
    walk = hrtimer_clock_base_for_each(base.address_of_(), limit=limit)
    timers, truncated = [], None
    try:
        timers = [_hrtimer(prog, int(t)) for t in walk]
    except FaultError as exc:
        truncated = f"unreadable hrtimer at {exc.address:#x}"
    return HrtimerClockBase(cpu, index, name, int(base.address_of_()), offset, tuple(timers),
                            truncated or walk.truncated)


def cpu_hrtimer_bases(prog: Program, cpu: int, *, limit: int = DEFAULT_LIMIT) -> list[HrtimerClockBase]:
    """Return every clock base of a CPU's ``hrtimer_bases`` with its queued hrtimers.

    Read from the per-CPU ``struct hrtimer_cpu_base``; timers in expiry order.

    :param prog: the program
    :param cpu: a possible CPU
    :param limit: the most timers per clock base
    :return: the clock bases, in ``clock_base[]`` order
    :raises FaultError: if the per-CPU base cannot be read

    >>> [(b.name, len(b.timers)) for b in cpu_hrtimer_bases(prog, 0)][:2]
    [('HRTIMER_BASE_MONOTONIC', 9), ('HRTIMER_BASE_REALTIME', 0)]
    """
    names = _clock_names(prog)
    try:
        cpu_type = prog.variable_type("hrtimer_bases")
    except TypeLookupError:
        cpu_type = prog.type("struct hrtimer_cpu_base")
    cpu_base = _percpu_variable(prog, "hrtimer_bases", cpu_type, cpu)
    return [_clock_base(prog, cpu, i, names.get(i, f"clock_base[{i}]"), base, limit)
            for i, base in enumerate(cpu_base.clock_base)]
