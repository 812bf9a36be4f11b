"""LiveSession on a scripted stub: handlers, conditions, step-over, watchpoints, slot limits, metrics,
and clean detach on normal exit, exceptions, Ctrl-C and lost connections."""

from __future__ import annotations

from typing import Any

import pytest
from gdbstub_fake import FakeStub

from kcrash.errors import LiveTargetError, MissingDebugInfoError
from kcrash.live.gdbremote.client import GdbRemoteClient
from kcrash.live.memory import LiveDump, find_vmcoreinfo_in_memory, parse_mtree_ram
from kcrash.live.session import HitContext, LiveSession, thread_cpu

BASE = 0xFFFFFFFF81000000


def make_session(stub: FakeStub, **kw: Any) -> LiveSession:
    client = GdbRemoteClient(stub.transport(), timeout=1.0)
    client.connect()
    return LiveSession(client, LiveDump(client, None), reconnect=stub.transport, **kw)


def test_handler_counts_hits_and_steps_over_the_breakpoint() -> None:
    stub = FakeStub()
    hits: list[int] = []

    def handler(ctx: HitContext) -> bool:
        hits.append(ctx.pc)
        return len(hits) == 5

    with make_session(stub) as session:
        bp = session.break_at(hex(BASE + 0x40), handler)
        ctx = session.cont()
        assert ctx is not None and ctx.breakpoint is bp and ctx.cpu == 0
        assert hits == [BASE + 0x40] * 5 and bp.hits == 5
        m = session.metrics()
        assert m["breakpoint_hits"] == 5 and m["handler_calls"] == 5 and m["resumes"] >= 5
        assert m["packets_sent"] > 0 and m["stop_resume_latency_mean_s"] > 0
    # step-over: remove, single-step the stopped vCPU, reinsert (4 times: hits 2..5)
    assert stub.log.count(b"z0,ffffffff81000040,1") == 4 + 1  # + the removal at detach
    assert stub.log.count(b"vCont;s:01") == 4
    assert stub.points == set() and stub.detached


def test_step_over_keeps_points_when_the_stub_ignores_them_while_stepping() -> None:
    stub = FakeStub()
    count = [0]
    with make_session(stub, step_over_inserted=True) as session:
        session.break_at(hex(BASE), lambda ctx: (count.__setitem__(0, count[0] + 1), count[0] >= 3)[1])
        session.cont()
    assert count[0] == 3 and stub.log.count(b"z0,ffffffff81000000,1") == 1


def test_a_single_step_from_a_breakpoint_lifts_it_as_the_step_over_does() -> None:
    # next-instruction and cont share one step-past: remove the point, step, reinsert it
    for inserted_stays in (False, True):
        stub = FakeStub()
        with make_session(stub, step_over_inserted=inserted_stays) as session:
            session.break_at(hex(BASE + 0x40), lambda ctx: True)
            assert session.cont() is not None
            removals = stub.log.count(b"z0,ffffffff81000040,1")
            ctx = session.step()
            assert ctx.pc != BASE + 0x40 and stub.log.count(b"vCont;s:01") == 1
            assert stub.log.count(b"z0,ffffffff81000040,1") == removals + (0 if inserted_stays else 1)
            assert BASE + 0x40 in {p[1] for p in stub.points}


def test_condition_and_ignore_count() -> None:
    stub = FakeStub()
    seen: list[int] = []
    with make_session(stub) as session:
        bp = session.break_at(hex(BASE), lambda ctx: (seen.append(1), len(seen) >= 2)[1],
                              condition=lambda ctx: ctx.breakpoint is not None and ctx.breakpoint.hits % 2 == 0,
                              ignore=2)
        session.cont()
        assert bp.hits == 6 and len(seen) == 2  # hits 1-2 ignored, 3 and 5 fail the condition


def test_watchpoint_reports_old_and_new_values() -> None:
    stub = FakeStub()
    stub.memory[0x100:0x108] = (41).to_bytes(8, "little")
    with make_session(stub) as session:
        wp = session.watch(hex(BASE + 0x100))
        assert wp.length == 8 and (2, BASE + 0x100, 8) in stub.points
        ctx = session.cont()
        assert ctx is not None and ctx.breakpoint is wp
        assert ctx.old == (41).to_bytes(8, "little") and ctx.new == (42).to_bytes(8, "little")
        assert session.metrics()["watchpoint_hits"] == 1
        ctx = session.cont()
        assert ctx is not None and ctx.old == (42).to_bytes(8, "little")


def test_hardware_slot_limit_is_reported_before_the_stub_refuses() -> None:
    stub = FakeStub()
    with make_session(stub, hw_slots=4) as session:
        session.watch(hex(BASE), length=16)  # two aligned 8-byte pieces: two slots
        session.break_at(hex(BASE + 0x20), hardware=True)
        session.break_at(hex(BASE + 0x30), hardware=True)
        with pytest.raises(LiveTargetError, match=r"needs 1 hardware debug register.*4 of the target's 4"):
            session.break_at(hex(BASE + 0x40), hardware=True)
        session.break_at(hex(BASE + 0x40))  # software breakpoints need no slot
        session.disable(2)
        session.break_at(hex(BASE + 0x50), hardware=True)
        with pytest.raises(LiveTargetError, match="4 of the target's 4"):
            session.enable(2)
        assert len(session.breakpoints) == 5


def test_stub_refusal_of_a_hardware_point_explains_the_debug_registers() -> None:
    stub = FakeStub(hw_limit=1)
    with make_session(stub) as session:
        session.watch(hex(BASE), length=8)
        with pytest.raises(LiveTargetError, match="out of hardware debug registers"):
            session.watch(hex(BASE + 8), length=8)
        assert len(session.breakpoints) == 1


def test_detach_removes_everything_and_resumes_or_keeps_stopped() -> None:
    stub = FakeStub()
    session = make_session(stub)
    session.break_at(hex(BASE))
    session.watch(hex(BASE + 8), kind="access")
    assert len(stub.points) == 2
    assert session.detach() == []
    assert stub.points == set() and stub.log[-1] == b"D"
    stub2 = FakeStub()
    kept = make_session(stub2, keep_stopped=True)
    kept.break_at(hex(BASE))
    kept.detach()
    assert stub2.points == set() and b"D" not in stub2.log and kept.client.closed


def test_exception_in_a_handler_still_detaches_cleanly() -> None:
    stub = FakeStub()

    def broken(ctx: HitContext) -> bool:
        raise RuntimeError("handler bug")

    with pytest.raises(RuntimeError, match="handler bug"), make_session(stub) as session:
        session.break_at(hex(BASE), broken)
        session.cont()
    assert stub.points == set() and stub.detached


def test_ctrl_c_while_running_interrupts_then_detaches() -> None:
    stub = FakeStub(run_forever=True)
    with pytest.raises(KeyboardInterrupt), make_session(stub) as session:
        session.break_at(hex(BASE))
        real = session.client.wait_stop

        def interrupted(timeout: float) -> None:
            session.client.wait_stop = real  # type: ignore[method-assign]
            raise KeyboardInterrupt

        session.client.wait_stop = interrupted  # type: ignore[method-assign]
        session.cont()
    assert b"\x03" in stub.log and stub.points == set() and stub.detached


def test_timeout_interrupts_and_returns_none() -> None:
    stub = FakeStub(run_forever=True)
    with make_session(stub) as session:
        assert session.cont(timeout=0.1) is None and not session.running
        assert session.counters.stops == 1


def test_lost_connection_reconnects_to_remove_points() -> None:
    stub = FakeStub()
    session = make_session(stub)
    session.break_at(hex(BASE))
    session.client.transport.close_peer()  # type: ignore[attr-defined]
    problems = session.detach()
    assert problems and "reconnected after" in problems[0]
    assert stub.points == set() and stub.detached


def test_lost_connection_without_a_way_back_says_so() -> None:
    stub = FakeStub()
    client = GdbRemoteClient(stub.transport(), timeout=1.0)
    client.connect()
    session = LiveSession(client, LiveDump(client, None))
    session.break_at(hex(BASE))
    client.transport.close_peer()  # type: ignore[attr-defined]
    with pytest.raises(LiveTargetError, match="may still be inserted"):
        session.detach()


def test_without_symbols_names_are_refused_and_arguments_are_raw() -> None:
    stub = FakeStub()
    stub.regs.update(rdi=7, rsi=8)
    with make_session(stub) as session:
        with pytest.raises(MissingDebugInfoError, match="without symbols"):
            session.break_at("schedule")
        session.break_at(hex(BASE))
        ctx = session.cont()
        assert ctx is not None and ctx.args["arg0"] == 7 and ctx.args["arg1"] == 8
        with pytest.raises(MissingDebugInfoError):
            _ = ctx.task


def test_memory_cache_is_dropped_on_resume() -> None:
    stub = FakeStub()
    with make_session(stub) as session:
        assert session.read(BASE, 4) == b"\0\0\0\0"
        stub.memory[:4] = b"new!"
        assert session.read(BASE, 4) == b"\0\0\0\0"  # coherent while stopped: cached
        session.break_at(hex(BASE + 0x10))
        session.cont()
        assert session.read(BASE, 4) == b"new!"


def test_thread_ids_map_to_cpus() -> None:
    assert thread_cpu("01") == 0 and thread_cpu("02") == 1 and thread_cpu("p1.0a") == 9


def test_vmcoreinfo_is_found_in_physical_memory_and_validated() -> None:
    stub = FakeStub(memory_base=0, memory_size=0x10000)
    page = b"OSRELEASE=6.1.0-test\nKERNELOFFSET=0\nPAGESIZE=4096\n"
    stub.memory[0x8000:0x8000 + len(page)] = page
    stub.memory[0x3000:0x3000 + 10] = b"OSRELEASE="  # a decoy without KERNELOFFSET
    client = GdbRemoteClient(stub.transport(), timeout=1.0)
    client.connect()
    dump = LiveDump(client, None)
    # no kernel text readable in the fake: only the VMCOREINFO's own consistency is checked
    info = find_vmcoreinfo_in_memory(dump, limit=0x10000)
    assert info.osrelease == "6.1.0-test" and info.kerneloffset == 0


def test_mtree_ram_ranges() -> None:
    text = ("FlatView #0\r\n  0000000000000000-00000000000c2fff (prio 0, ram): pc.ram\r\n"
            "  00000000000c3000-00000000000e7fff (prio 0, rom): pc.ram @00000000000c3000\r\n"
            "  0000000000100000-000000000fffffff (prio 0, ram): pc.ram @0000000000100000\r\n"
            "FlatView #1\r\n  0000000000000000-0000000000000007 (prio 0, ram): other\r\n")
    assert parse_mtree_ram(text) == [(0, 0xC3000), (0x100000, 0x10000000)]


# QEMU 7.2 left this in a lab run: a vCPU kept a watchpoint hit from an earlier session (another vCPU's
# stop was reported instead), and its next stop, at our breakpoint, carried the freed watchpoint's address.
STALE_WATCH = 0x55CA12206330


def test_a_stale_watch_report_at_a_breakpoint_still_runs_its_handler() -> None:
    stub = FakeStub()
    stub.stale_watch = STALE_WATCH
    hits: list[int] = []
    with make_session(stub) as session:
        bp = session.break_at(hex(BASE + 0x40), lambda ctx: (hits.append(ctx.pc), True)[1])
        ctx = session.cont()
        assert ctx is not None and ctx.stop.watch_address == STALE_WATCH
        assert ctx.breakpoint is bp and hits == [BASE + 0x40] and bp.hits == 1
        m = session.metrics()
        assert m["breakpoint_hits"] == 1 and m["watchpoint_hits"] == 0 and m["stale_watch_reports"] == 1


def test_a_stale_watch_report_ending_a_step_over_is_not_a_stop() -> None:
    stub = FakeStub()
    count = [0]

    def handler(ctx: HitContext) -> bool:
        count[0] += 1
        stub.stale_watch = STALE_WATCH  # carried by the next stop reply: the step over this breakpoint
        return count[0] >= 2

    with make_session(stub, step_over_inserted=True) as session:
        bp = session.break_at(hex(BASE), handler)
        ctx = session.cont()
        assert ctx is not None and ctx.breakpoint is bp and count[0] == 2
        assert session.metrics()["stale_watch_reports"] == 1  # the step's (the second hit's is never sent)
    assert stub.log.count(b"vCont;s:01") == 1


def test_a_watch_report_does_not_hide_a_breakpoint_at_pc() -> None:
    stub = FakeStub()
    seen: list[str] = []
    with make_session(stub) as session:
        wp = session.watch(hex(BASE + 0x100), handler=lambda ctx: (seen.append("watch"), False)[1])
        bp = session.break_at(hex(BASE + 0x40), lambda ctx: (seen.append("break"), True)[1])
        stub.stale_watch = BASE + 0x100  # a left-over hit of a watchpoint that still exists
        ctx = session.cont()
        # hit at the stop that carried the watch report, not stepped over (which QEMU would not re-hit)
        assert ctx is not None and ctx.stop.watch_address == BASE + 0x100 and ctx.breakpoint is bp
        assert seen == ["watch", "break"] and wp.hits == 1 and bp.hits == 1
        assert session.metrics()["stale_watch_reports"] == 0
    assert b"vCont;s:01" not in stub.log
