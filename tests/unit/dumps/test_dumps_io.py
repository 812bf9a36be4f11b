"""kcrash.dumps._io: positional reads of a dump file (PlainFile: pread, preadv, covers/covered at the
file's end) and read_exact, which turns a read outside the file or a short read into
CorruptDumpError with the offset."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.dumps._io import PlainFile, read_exact
from kcrash.errors import CorruptDumpError
from kcrash.metrics import COUNTERS

DATA = bytes(range(256)) * 4  # 1024 bytes


@pytest.fixture
def plain(tmp_path: Path) -> PlainFile:
    path = tmp_path / "f"
    path.write_bytes(DATA)
    return PlainFile(path)


def test_pread_and_counters(plain: PlainFile) -> None:
    before = COUNTERS.dump_bytes_read
    assert (plain.size, plain.stored, plain.truncated) == (1024, 1024, False)
    assert plain.pread(250, 10) == DATA[250:260]
    assert plain.pread(1020, 100) == DATA[1020:]  # short only at the end
    assert plain.pread(2000, 8) == b""
    assert COUNTERS.dump_bytes_read - before == 14
    with pytest.raises(CorruptDumpError, match="negative read"):
        plain.pread(-1, 4)
    plain.close()
    plain.close()  # twice is harmless


def test_covers_and_covered(plain: PlainFile) -> None:
    assert plain.covers(0, 1024) and plain.covers(1000, 24)
    assert not plain.covers(1000, 25) and not plain.covers(-1, 1)
    assert plain.covered(1000, 100) == 24
    assert plain.covered(0, 10) == 10
    assert plain.covered(2000, 10) == 0
    assert plain.covered(-4, 10) == 0


def test_preadv_fills_buffers_in_turn(plain: PlainFile) -> None:
    a, b = bytearray(3), bytearray(5)
    assert plain.preadv([memoryview(a), memoryview(b)], 100) == 8
    assert bytes(a + b) == DATA[100:108]
    c = bytearray(16)
    assert plain.preadv([memoryview(c)], 1016) == 8  # short at the end
    assert bytes(c[:8]) == DATA[1016:]


def test_read_exact(plain: PlainFile) -> None:
    assert read_exact(plain, 16, 16, "header") == DATA[16:32]
    with pytest.raises(CorruptDumpError, match=r"page table \(32 bytes\) lies outside the file \(1024 bytes\)") \
            as info:
        read_exact(plain, 1000, 32, "page table")
    assert info.value.offset == 1000
    with pytest.raises(CorruptDumpError, match="outside the file"):
        read_exact(plain, -8, 4, "note")


class _ShortView:
    """A view whose size promises more than its reads return (a file cut while open)."""

    path = Path("cut")
    size = 100
    stored = 100
    truncated = True

    def pread(self, offset: int, n: int) -> bytes:
        return bytes(n // 2)

    def covers(self, offset: int, n: int) -> bool:
        return True

    def covered(self, offset: int, n: int) -> int:
        return n

    def close(self) -> None:
        pass


def test_read_exact_short_read() -> None:
    with pytest.raises(CorruptDumpError, match="short read of bitmap"):
        read_exact(_ShortView(), 0, 10, "bitmap")
