"""kallsyms recognised in a synthetic kernel image by structure, with VMCOREINFO giving only _stext: both
placements scripts/kallsyms has used (offsets first, up to v6.1; names first, v6.2 on), inside noise."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest
from test_kallsyms import STEXT, TABLES, encode, make_rows, vmcoreinfo_for

from kcrash.debuginfo.kallsyms import KallsymsImage, load_kallsyms
from kcrash.debuginfo.kallsyms_finder import find_kallsyms_candidates, find_token_index
from kcrash.dumps.vmcoreinfo import parse_vmcoreinfo
from kcrash.errors import MissingDebugInfoError
from kcrash.memory import MemoryReader, SegmentMap


def _image_memory(tables: bytes, at: int, seed: int = 3) -> MemoryReader:
    # Noise from _stext up to the tables (text bytes), the tables, then more noise.
    rng = random.Random(seed)
    data = rng.randbytes(at - STEXT) + tables + rng.randbytes(0x20000)
    segments = SegmentMap()
    segments.add_segment(STEXT, len(data), lambda a, n: data[a - STEXT:a - STEXT + n], physical=False)
    return MemoryReader(segments)


def _names_first(image: KallsymsImage) -> tuple[bytes, dict[str, int]]:
    # Rearrange the encoder's (v6.1) order into v6.2's: num_syms, names, markers, token table and
    # index, then offsets and relative_base (the absolute-percpu offsets do not depend on where they lie).
    sym, data, base = image.symbols, image.data, image.base

    def part(start: str, end: int) -> bytes:
        return data[sym[start] - base:end - base]

    pieces = [("kallsyms_num_syms", part("kallsyms_num_syms", sym["kallsyms_token_table"])),
              ("kallsyms_token_table", part("kallsyms_token_table", sym["kallsyms_token_index"] + 512)),
              ("kallsyms_offsets", part("kallsyms_offsets", sym["kallsyms_relative_base"])),
              ("kallsyms_relative_base", part("kallsyms_relative_base", sym["kallsyms_relative_base"] + 8))]
    out, where = bytearray(), {}
    for name, blob in pieces:
        out += bytes(-len(out) % 8)
        where[name] = TABLES + len(out)
        out += blob
    where["kallsyms_names"] = where["kallsyms_num_syms"] + sym["kallsyms_names"] - sym["kallsyms_num_syms"]
    where["kallsyms_token_index"] = where["kallsyms_token_table"] + sym["kallsyms_token_index"] - \
        sym["kallsyms_token_table"]
    return bytes(out), where


def _only_stext() -> object:
    return parse_vmcoreinfo(f"OSRELEASE=5.10.0-test\nSYMBOL(_stext)={STEXT:x}\n")


@pytest.mark.parametrize("placement", ["offsets-first", "names-first"])
def test_tables_are_found_by_structure(placement: str) -> None:
    image = encode(make_rows(long_name=False, percpu=True, count=3000), "absolute-percpu")
    if placement == "offsets-first":
        blob, where = image.data, image.symbols
    else:
        blob, where = _names_first(image)
    mem = _image_memory(blob, TABLES)
    candidates = list(find_kallsyms_candidates(mem, STEXT))
    assert any(all(c.get(k) == v for k, v in where.items()) for c in candidates)
    got = load_kallsyms(mem, _only_stext())  # type: ignore[arg-type]
    want = load_kallsyms(MemoryReader(_with(image)), vmcoreinfo_for(image))
    assert [s.name for s in got.iter_symbols()] == [s.name for s in want.iter_symbols()]
    assert np.array_equal(got.kernel_addresses(), want.kernel_addresses())


def _with(image: KallsymsImage) -> SegmentMap:
    segments = SegmentMap()
    data = image.data
    segments.add_segment(image.base, len(data), lambda a, n: data[a - image.base:a - image.base + n], physical=False)
    return segments


def test_noise_alone_has_no_token_index() -> None:
    assert find_token_index(random.Random(5).randbytes(1 << 20)) is None
    assert find_token_index(bytes(1 << 16)) is None


def test_an_image_without_kallsyms_names_what_to_give() -> None:
    mem = _image_memory(b"", TABLES)
    with pytest.raises(MissingDebugInfoError, match=r"no kallsyms tables were recognised.*--system-map"):
        load_kallsyms(mem, _only_stext())  # type: ignore[arg-type]


def test_the_placement_found_is_kept_by_build_id(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from kcrash.debuginfo import kallsyms_finder

    image = encode(make_rows(long_name=False, percpu=True, count=500), "absolute-percpu")
    mem = _image_memory(image.data, TABLES)
    info = parse_vmcoreinfo(f"OSRELEASE=5.10.0-test\nBUILD-ID={'ab' * 20}\nSYMBOL(_stext)={STEXT:x}\n")
    first = load_kallsyms(mem, info, Path(str(tmp_path)))

    def no_scan(*args: object, **kwargs: object) -> Iterator[dict[str, int]]:
        raise AssertionError("the image was scanned again")
        yield {}  # a generator, as the real finder is

    monkeypatch.setattr(kallsyms_finder, "find_kallsyms_candidates", no_scan)
    again = load_kallsyms(mem, info, Path(str(tmp_path)))
    assert [s.name for s in again.iter_symbols()] == [s.name for s in first.iter_symbols()]
    assert "recognised in the kernel image" in again.source
