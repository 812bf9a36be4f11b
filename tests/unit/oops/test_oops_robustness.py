"""Hostile input: fuzzed text, binary data, invalid UTF-8, a 1 MB line, a 100 MB stream."""

from __future__ import annotations

import io
import os
import time
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcrash.oops import contains_crash, decode_log, iter_reports, parse, parse_all
from support.fuzzing import parse_or_kcrash_error

_PIECES = [
    "BUG: ", "WARNING: ", "INFO: ", "Kernel panic - not syncing: ", "general protection fault: 0000",
    "kernel BUG at mm/slub.c:1!", "invalid opcode: 0000", "Call Trace:\n", " foo+0x1/0x2\n", "RIP: 0010:",
    "[   1.000000] ", "[   2.5][ T12] ", "[  C1] ", "\n", " ? ", "<IRQ>\n", "BUG: KASAN: ", " in ", "Read of size 8",
    "INFO: task x:1 blocked for more than 10 seconds.", "panic:", "UBSAN:", "\x00", "\xff", "Code: 0f <0b>\n",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=20)), max_size=40))
def test_fuzzed_logs_keep_the_invariants(pieces: list[str]) -> None:
    log = "".join(pieces)
    rep = parse(log)
    assert contains_crash(log) == (rep is not None)
    for found in parse_all(log):
        assert found.title
        assert found.start_pos < found.skip_pos <= found.end_pos <= len(log)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=4096))
def test_binary_data_never_raises(data: bytes) -> None:
    log = decode_log(data)
    reports = list(iter_reports(io.BytesIO(data)))
    assert contains_crash(log) == (parse(log) is not None)
    assert all(r.title for r in reports)


def test_invalid_utf8_is_parsed() -> None:
    data = b"[    1.0] BUG: unable to handle page fault for address: \xff\xfe\xc3(\n[    1.1] RIP: 0010:f\xe9+0x1/0x2\n"
    reports = list(iter_reports(io.BytesIO(data)))
    assert [r.title for r in reports] == ["BUG: unable to handle kernel paging request in corrupted"]


def test_one_megabyte_line() -> None:
    line = "BUG: spinlock bad magic " + "x" * (1 << 20) + "\n"
    rep = parse(line + "Call Trace:\n foo+0x1/0x2\n")
    assert rep is not None and rep.title == "BUG: spinlock bad magic in foo"


def test_a_flood_of_oops_lines_parses_in_linear_time() -> None:
    # One-line warnings (9 MB at 200,000): each report's end is the last oops line of the log, found
    # once per log; it was searched for again from each report on, over every later line (10 s per
    # parse of a million lines, and quadratic in parse_all). Linear, not a wall-clock bound (a loaded
    # CI machine): four times the lines take well under 16 times (quadratic) as long, best of three.
    line = "WARNING: CPU: 0 PID: 1 at foo.c:1 bar+0x1/0x2\n"

    def best(lines: int) -> float:
        log = line * lines
        times = []
        for _ in range(3):
            began = time.perf_counter()
            rep = parse(log)
            times.append(time.perf_counter() - began)
        assert rep is not None and rep.start_pos == 0 and rep.skip_pos == len(line) - 1
        assert rep.end_pos == len(log) - 1
        return min(times)

    assert best(200_000) < 8 * best(50_000)


def test_reports_of_a_flood_end_at_the_last_oops_line() -> None:
    line = "WARNING: CPU: 0 PID: 1 at foo.c:1 bar+0x1/0x2\n"
    log = line * 300 + "[ 1.0] eth0: link is up\n" * 10
    reports = parse_all(log)
    assert len(reports) == 300
    assert {r.end_pos for r in reports} == {300 * len(line) - 1}
    assert [r.start_pos for r in reports] == [k * len(line) for k in range(300)]


def _big_log(total: int) -> Iterator[bytes]:
    noise = b"".join(b"[%6d.%06d] eth0: link is up, 1000 Mbps full duplex, flow control rx/tx\n" % (i, i)
                     for i in range(2000))
    crash = (b"[  999.000000] BUG: kernel NULL pointer dereference, address: 0000000000000010\n"
             b"[  999.000001] RIP: 0010:kcrash_test_level2+0x15/0x30 [kcrash_test]\n"
             b"[  999.000002] Call Trace:\n[  999.000003]  kcrash_test_level1+0x11/0x20 [kcrash_test]\n")
    sent = 0
    while sent < total:
        block = noise * 8 + (crash if sent % (16 << 20) < len(noise) * 8 else b"")
        yield block
        sent += len(block)


class _ChunkStream(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.buf = chunks, b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while len(self.buf) < max(size, 1):
            nxt = next(self.chunks, None)
            if nxt is None:
                break
            self.buf += nxt
        out, self.buf = self.buf[:size], self.buf[size:]
        return out


@pytest.mark.slow
def test_hundred_megabyte_stream_in_bounded_memory() -> None:
    size = int(os.environ.get("KCRASH_BIG_LOG_MB", "100")) << 20
    tracemalloc.start()
    try:
        titles = [r.title for r in iter_reports(_ChunkStream(_big_log(size)))]  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert titles and set(titles) == {"BUG: unable to handle kernel NULL pointer dereference in kcrash_test_level2"}
    assert peak < 64 << 20


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_PIECES), st.integers(1, 400)), max_size=4))
def test_repeated_pieces_parse_in_bounded_time(runs: list[tuple[str, int]]) -> None:
    # Long runs of one piece (no newline between them) are where a backtracking pattern would blow up.
    log = "".join(piece * count for piece, count in runs)
    parse_or_kcrash_error(lambda: (parse(log), parse_all(log), contains_crash(log)))
