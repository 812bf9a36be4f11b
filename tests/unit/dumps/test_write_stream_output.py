"""StreamOutput (makedumpfile -F to a pipe): records go out in order, a patch is a later record for
the same range, and the flattened reader (like ``makedumpfile -R``) lets the later copy win; other
overlaps stay refused."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from kcrash.dumps.flattened import FlatFile
from kcrash.dumps.write.output import StreamOutput
from kcrash.errors import CorruptDumpError


def _stream(path: Path, writes: list[tuple[int, bytes]], patches: list[tuple[int, bytes]]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    out = StreamOutput(fd)
    for offset, data in writes:
        out.write(offset, data)
    for offset, data in patches:
        out.patch(offset, data)
    assert out.commit() == Path("<stdout>")
    os.close(fd)


def test_a_patch_is_a_later_record_that_wins(tmp_path: Path) -> None:
    path = tmp_path / "flat"
    _stream(path, [(0, b"INCOMPLE"), (4096, b"x" * 100)], [(0, b"COMPLETE")])
    raw = path.read_bytes()
    assert raw.count(b"INCOMPLE") == 1 and raw.count(b"COMPLETE") == 1  # both records are in the stream
    assert raw.endswith(struct.pack(">qq", -1, -1))
    view = FlatFile(path)
    assert view.pread(0, 8) == b"COMPLETE" and view.pread(4096, 100) == b"x" * 100
    view.close()


def test_other_overlaps_are_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "flat"
    _stream(path, [(0, b"abcdefgh"), (4, b"XYZ")], [])
    with pytest.raises(CorruptDumpError, match="overlap"):
        FlatFile(path)
