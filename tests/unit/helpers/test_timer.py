"""timer.h / hrtimer.h helpers on the synthetic two-CPU kernel (tests/support/state_kernel.py):
every pending timer_list of each CPU's timer bases by expiry with its function symbol, the base
names and NR_BASES from the per-CPU symbol's extent, hrtimers of each clock base in tree order,
and bounded walks of a bucket that loops."""

from __future__ import annotations

from kcrash.helpers.linux.timer import (
    cpu_hrtimer_bases,
    cpu_timer_bases,
    get_jiffies,
    hrtimer_clock_base_for_each,
    symbol_text,
    timer_base_for_each,
    timer_base_names,
)
from kcrash.types.object import Object
from support.state_kernel import HRTIMER_BASES, JIFFIES, TIMER_BASES, Kernel, func, percpu, sample


def test_timer_bases_by_expiry_with_function_symbols() -> None:
    k, named = sample()
    assert get_jiffies(k.prog) == 5000
    assert timer_base_names(k.prog) == ("BASE_STD", "BASE_DEF")  # 0x200 bytes of 0x100-byte bases
    cpu0 = cpu_timer_bases(k.prog, 0)
    assert [(b.cpu, b.name, b.address) for b in cpu0] == [
        (0, "BASE_STD", percpu(0, TIMER_BASES)), (0, "BASE_DEF", percpu(0, TIMER_BASES) + 0x100)]
    # both on one bucket, listed by expiry whatever the bucket order
    assert [(t.address, t.expires, t.function_name) for t in cpu0[0].timers] == [
        (named["timer_b"], 5050, "delayed_work_timer_fn"), (named["timer_a"], 5100, "process_timeout")]
    assert cpu0[1].timers == () and cpu0[0].truncated is None
    # CPU 1 is offline in the mask but its wheel is still read
    (timer,) = cpu_timer_bases(k.prog, 1)[1].timers
    assert (timer.address, timer.function, timer.function_name) == (
        named["timer_c"], func("process_timeout") + 0x10, "process_timeout+0x10")


def test_timer_base_for_each_matches_the_buckets() -> None:
    k, named = sample()
    base = Object(k.prog, k.prog.pointer_type("struct timer_base"), percpu(0, TIMER_BASES))
    assert sorted(int(t) for t in timer_base_for_each(base)) == sorted((named["timer_a"], named["timer_b"]))


def test_a_looping_bucket_ends_with_a_reason() -> None:
    k, named = sample()
    k.u64(named["timer_a"], named["timer_b"])  # timer_b -> timer_a -> timer_b ...
    base = cpu_timer_bases(k.prog, 0)[0]
    assert base.truncated is not None and "cycle" in base.truncated
    assert {t.address for t in base.timers} == {named["timer_a"], named["timer_b"]}


def test_hrtimers_in_expiry_order_per_clock_base() -> None:
    k, named = sample()
    bases = cpu_hrtimer_bases(k.prog, 0)
    assert [(b.index, b.name) for b in bases] == [(0, "HRTIMER_BASE_MONOTONIC"), (1, "HRTIMER_BASE_REALTIME")]
    assert [(t.address, t.softexpires, t.expires, t.function_name) for t in bases[0].timers] == [
        (named["hrtimer_a"], 100, 150, "tick_nohz_handler"), (named["hrtimer_b"], 200, 200, "hrtimer_wakeup")]
    assert bases[1].timers == () and all(not b.timers for b in cpu_hrtimer_bases(k.prog, 1))
    clock = Object(k.prog, k.prog.pointer_type("struct hrtimer_clock_base"), percpu(0, HRTIMER_BASES))
    assert [int(t) for t in hrtimer_clock_base_for_each(clock)] == [named["hrtimer_a"], named["hrtimer_b"]]


def test_symbol_text_outside_any_symbol() -> None:
    k = Kernel()
    assert symbol_text(k.prog, 0) is None
    assert symbol_text(k.prog, 0x1234) is None
    assert symbol_text(k.prog, func("hrtimer_wakeup")) == "hrtimer_wakeup"
    k.u64(JIFFIES, 1 << 40)
    assert get_jiffies(k.prog) == 1 << 40
