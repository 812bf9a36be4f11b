"""Bad input: truncation at many offsets and corruption of every header field we trust must end in a
typed error (CorruptDumpError with a file offset, or FaultError), never another exception, a hang or
an unbounded allocation."""

from __future__ import annotations

import contextlib
import struct
import tracemalloc
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcrash.dumps import open_dump
from kcrash.errors import CorruptDumpError, KcrashError
from kcrash.memory import open_kernel_memory
from support.dumpfuzz import exercise as read_dump
from support.synthetic import make_synthetic_kernel

_KERNEL = make_synthetic_kernel(seed=3)
_FILES: dict[str, bytes] = {}


def _original(tmp: Path, kind: str) -> bytes:
    if kind not in _FILES:
        path = tmp / kind
        if kind == "elf":
            _KERNEL.write_elf(path)
        else:
            _KERNEL.write_kdump(path, flattened=kind == "flat", codec="zlib" if kind != "zstd" else "zstd")
        _FILES[kind] = path.read_bytes()
    return _FILES[kind]


def exercise(path: Path) -> None:
    """Open and read everything, kernel memory too; only KcrashError may escape."""
    read_dump(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dump = open_dump(path)
    try:
        with contextlib.suppress(KcrashError):
            open_kernel_memory(dump).read(_KERNEL.stext, 64)
    finally:
        dump.close()


def _run(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad"
    path.write_bytes(data)
    try:
        exercise(path)
    except CorruptDumpError as exc:
        assert exc.offset is not None
    except KcrashError:
        pass


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("kind", ["elf", "kdump", "flat"])
@SETTINGS
@given(cut=st.floats(0, 1))
def test_truncated(tmp_path: Path, kind: str, cut: float) -> None:
    data = _original(tmp_path, kind)
    _run(tmp_path, data[:int(len(data) * cut)])


def _kdump_fields() -> list[tuple[int, str]]:
    bs = 4096
    header = [(8, "<i"), (424, "<I"), (428, "<i"), (432, "<i"), (436, "<I"), (440, "<I"), (460, "<i")]
    sub = [(bs + o, "<q") for o in (0, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96)] + [(bs + 8, "<i"), (bs + 12, "<i")]
    return header + sub


_VALUES = st.one_of(st.sampled_from([0, 1, -1, 2**31 - 1, 2**63 - 1, 4095, 4097, 1 << 40]),
                    st.integers(-(2**31), 2**31 - 1))


@SETTINGS
@given(field=st.sampled_from(_kdump_fields()), value=_VALUES)
def test_kdump_header_fields(tmp_path: Path, field: tuple[int, str], value: int) -> None:
    data = bytearray(_original(tmp_path, "kdump"))
    offset, fmt = field
    size = struct.calcsize(fmt)
    data[offset:offset + size] = (value % (1 << (8 * size))).to_bytes(size, "little")
    _run(tmp_path, bytes(data))


@SETTINGS
@given(index=st.integers(0, 900), part=st.sampled_from([(0, "<q"), (8, "<I"), (12, "<I")]), value=_VALUES)
def test_kdump_page_desc(tmp_path: Path, index: int, part: tuple[int, str], value: int) -> None:
    data = bytearray(_original(tmp_path, "zstd"))
    desc_offset = 4096 * (1 + 2 + 2)  # header, sub-header blocks, bitmap blocks (see the writer)
    hdr = struct.unpack_from("<iiI", data, 428)
    desc_offset = hdr[0] * (1 + hdr[1] + hdr[2])
    off = desc_offset + 24 * index + part[0]
    size = struct.calcsize(part[1])
    data[off:off + size] = (value % (1 << (8 * size))).to_bytes(size, "little")
    _run(tmp_path, bytes(data))


@SETTINGS
@given(pos=st.floats(0.3, 1), junk=st.binary(min_size=1, max_size=64))
def test_broken_compressed_data(tmp_path: Path, pos: float, junk: bytes) -> None:
    for kind in ("kdump", "zstd"):
        data = bytearray(_original(tmp_path, kind))
        at = int(len(data) * pos) - len(junk)
        data[at:at + len(junk)] = junk
        _run(tmp_path, bytes(data))


def _elf_fields() -> list[tuple[int, str]]:
    ph = 192 + 56  # first PT_LOAD of the QEMU layout (PT_NOTE is at 192)
    return [(0x20, "<Q"), (0x36, "<H"), (0x38, "<H"), (0x28, "<Q"), (0x3C, "<H"), (192 + 8, "<Q"),
            (192 + 32, "<Q"), (ph + 8, "<Q"), (ph + 16, "<Q"), (ph + 24, "<Q"), (ph + 32, "<Q"),
            (ph + 40, "<Q"), (4, "<B"), (5, "<B")]


@SETTINGS
@given(field=st.sampled_from(_elf_fields()), value=_VALUES)
def test_elf_header_fields(tmp_path: Path, field: tuple[int, str], value: int) -> None:
    data = bytearray(_original(tmp_path, "elf"))
    offset, fmt = field
    size = struct.calcsize(fmt)
    data[offset:offset + size] = (value % (1 << (8 * size))).to_bytes(size, "little")
    _run(tmp_path, bytes(data))


@SETTINGS
@given(rec=st.integers(0, 40), value=_VALUES, which=st.sampled_from([0, 8]))
def test_flattened_records(tmp_path: Path, rec: int, value: int, which: int) -> None:
    data = bytearray(_original(tmp_path, "flat"))
    pos = 4096
    for _ in range(rec):  # walk to record `rec`
        size = struct.unpack_from(">q", data, pos + 8)[0]
        if size < 0:
            break
        pos += 16 + size
    struct.pack_into(">q", data, pos + which, max(min(value, 2**63 - 1), -(2**63)))
    _run(tmp_path, bytes(data))


@pytest.mark.parametrize(("kind", "offset", "fmt", "value"), [
    ("kdump", 4096 + 56, "<Q", 2**62),        # size_note absurd
    ("kdump", 436, "<I", 2**32 - 2),          # bitmap_blocks absurd
    ("kdump", 4096 + 96, "<Q", 2**60),        # max_mapnr_64 absurd
    ("elf", 0x38, "<H", 0xFFFE),              # e_phnum absurd
    ("elf", 192 + 32, "<Q", 2**62),           # PT_NOTE p_filesz absurd
])
def test_absurd_sizes_are_cheap(tmp_path: Path, kind: str, offset: int, fmt: str, value: int) -> None:
    data = bytearray(_original(tmp_path, kind))
    struct.pack_into(fmt, data, offset, value)
    tracemalloc.start()
    try:
        _run(tmp_path, bytes(data))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    path = tmp_path / "bad"
    with pytest.raises(CorruptDumpError) as exc:
        exercise(path)
    assert exc.value.offset is not None
