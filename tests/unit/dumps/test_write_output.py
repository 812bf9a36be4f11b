"""kcrash.dumps.write.output: a short or failed write ends in OutputFull, raw and flattened alike;
a flattened file is cut back so that no partial record stays."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from kcrash.dumps.write import output
from kcrash.dumps.write.output import DumpOutput, OutputFull


@pytest.mark.parametrize("flattened", [False, True])
@pytest.mark.parametrize("how", ["short", "enospc"])
def test_a_full_disk_is_output_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flattened: bool,
                                    how: str) -> None:
    out = DumpOutput(tmp_path / "dump", flattened=flattened)
    size = out.path.stat().st_size
    real = os.pwrite

    def full(fd: int, data: bytes, offset: int) -> int:
        if how == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, bytes(data)[: len(data) // 2], offset)

    monkeypatch.setattr(output.os, "pwrite", full)
    try:
        with pytest.raises(OutputFull):
            out.write(0, b"x" * 64)
        assert out.failure in (os.strerror(errno.ENOSPC), "No space left on device")
        if flattened:  # the partial record was cut off: the file is as it was before the write
            assert out.path.stat().st_size == size
    finally:
        out.discard()
    assert not out.path.exists()
