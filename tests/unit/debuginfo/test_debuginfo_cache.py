"""kcrash.debuginfo.cache: the build-id-keyed cache files of derived debug info. A round trip gives
back the facts and payload; anything else (another kind or version, a flipped payload byte, a cut
file, no file, no cache directory, a key that is not hex) reads as None; writes never raise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kcrash.debuginfo.cache import cache_path_or_none, read_cache_or_none, write_cache

KEY = "00112233445566778899aabbccddeeff00112233"


def test_path_needs_a_directory_and_a_hex_key(tmp_path: Path) -> None:
    assert cache_path_or_none(tmp_path, "kallsyms", KEY) == tmp_path / "kallsyms" / f"{KEY}.bin"
    assert cache_path_or_none(None, "kallsyms", KEY) is None
    assert cache_path_or_none(tmp_path, "kallsyms", None) is None
    for bad in ("../../etc/passwd", "ABCDEF0123", "abc", "g" * 40):
        assert cache_path_or_none(tmp_path, "kallsyms", bad) is None, bad


def test_round_trip(tmp_path: Path) -> None:
    path = cache_path_or_none(tmp_path, "kallsyms", KEY)
    payload = bytes(range(256)) * 10 + b"\n\n"  # newlines in the payload are data
    write_cache(path, "kallsyms", 3, {"count": 42, "names": ["a", "b"]}, payload)
    got = read_cache_or_none(path, "kallsyms", 3)
    assert got is not None
    facts, data = got
    assert data == payload
    assert facts["count"] == 42 and facts["names"] == ["a", "b"]
    assert path is not None and path.read_bytes().startswith(b"KCRASH kallsyms 3\n")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_other_kind_or_version_reads_as_absent(tmp_path: Path) -> None:
    path = tmp_path / "k" / f"{KEY}.bin"
    write_cache(path, "kallsyms", 3, {}, b"payload")
    assert read_cache_or_none(path, "kallsyms", 4) is None
    assert read_cache_or_none(path, "btf", 3) is None
    assert read_cache_or_none(None, "kallsyms", 3) is None
    assert read_cache_or_none(tmp_path / "missing.bin", "kallsyms", 3) is None


@pytest.mark.parametrize("damage", ["flip", "cut", "facts", "header_only"])
def test_damaged_file_reads_as_absent(tmp_path: Path, damage: str) -> None:
    path = tmp_path / f"{KEY}.bin"
    write_cache(path, "kallsyms", 1, {"n": 1}, b"x" * 100)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-1] ^= 1
    elif damage == "cut":
        del data[-10:]
    elif damage == "facts":
        data = data.replace(b'"n": 1', b'"n": {')
    else:
        data = data[:data.index(b"\n") + 1]
    path.write_bytes(bytes(data))
    assert read_cache_or_none(path, "kallsyms", 1) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_unwritable_directory_is_ignored(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        write_cache(ro / "kallsyms" / f"{KEY}.bin", "kallsyms", 1, {}, b"data")  # must not raise
        assert not (ro / "kallsyms").exists()
    finally:
        ro.chmod(0o700)


def test_cache_path_under_a_file_is_ignored(tmp_path: Path) -> None:
    # the cache "directory" is a regular file: mkdir fails with an OSError, swallowed
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    write_cache(blocker / "kallsyms" / f"{KEY}.bin", "kallsyms", 1, {}, b"data")
    assert blocker.read_text() == "not a directory"
