"""kcrash.collect.vmcore on a synthetic kernel's /proc/vmcore-shaped ELF: a file or a flattened stream
on a pipe holds the same pages as the source, a full disk (a file-size limit, EFBIG) keeps what was
written flagged incomplete with makedumpfile's FAILED status, and the exit codes are makedumpfile's."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kcrash.collect.convert import ConvertOptions, convert_dump
from kcrash.collect.source import dump_pages
from kcrash.collect.vmcore import COMPLETED, FAILED, MAKEDUMPFILE_EXIT, collect_vmcore
from kcrash.dumps import open_dump
from kcrash.dumps.base import DumpWarning
from kcrash.dumps.kdump_compressed import KdumpCompressed
from kcrash.errors import FaultError, ValidationError
from support.synthetic import make_synthetic_kernel


@pytest.fixture
def vmcore(tmp_path: Path) -> Path:
    path = tmp_path / "vmcore"
    make_synthetic_kernel().write_elf(path, qemu_layout=False)
    return path


def _same_pages(src: Path, out: Path) -> int:
    a, b = open_dump(src), open_dump(out)
    pa, pb = dump_pages(a), dump_pages(b)
    kept = np.flatnonzero(pb.present)
    for pfn in kept:
        assert pb.read_pages(int(pfn), 1) == pa.read_pages(int(pfn), 1)
    for pfn in np.flatnonzero(pa.present & ~pb.present):  # only zero pages were left out (-d 1)
        assert not any(pa.read_pages(int(pfn), 1))
    for x in (pa, pb, a, b):
        x.close()
    return len(kept)


def test_makedumpfile_exit_codes() -> None:
    # makedumpfile.h (1.7.2): COMPLETED 0, FAILED 1, WRONG_RELEASE 2
    assert MAKEDUMPFILE_EXIT == {"COMPLETED": 0, "FAILED": 1, "WRONG_RELEASE": 2}


def test_file_output_holds_the_source_pages(vmcore: Path, tmp_path: Path) -> None:
    out = tmp_path / "dump"
    col = collect_vmcore(open_dump(vmcore), out, ConvertOptions(1, "zstd", "kdump"))
    assert col.exit_status == COMPLETED and not col.streamed and col.result.write.path == out
    report = col.result.report
    # kdump output keeps the zero pages' 2nd-bitmap bits (they share pd_zero), as makedumpfile does
    assert _same_pages(vmcore, out) == report.remaining + report.excluded["zero"] == col.result.write.pages_written


def test_stream_on_a_pipe_reads_back_as_a_flattened_dump(vmcore: Path, tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(read_fd, 1 << 16):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    col = collect_vmcore(open_dump(vmcore), None, ConvertOptions(1, "zlib", "flat"), stream_fd=write_fd)
    os.close(write_fd)
    reader.join()
    os.close(read_fd)
    assert col.exit_status == COMPLETED and col.streamed
    flat = tmp_path / "flat"
    flat.write_bytes(bytes(received))
    dump = open_dump(flat)
    assert not dump.describe().status_flags or "incomplete" not in dump.describe().status_flags
    dump.close()
    assert _same_pages(vmcore, flat) > 300


def test_a_stream_needs_the_flattened_format_and_one_target(vmcore: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        collect_vmcore(open_dump(vmcore), None, ConvertOptions(1, "zlib", "kdump"), stream_fd=1)
    with pytest.raises(ValidationError):
        collect_vmcore(open_dump(vmcore), tmp_path / "x", ConvertOptions(1, "zlib", "flat"), stream_fd=1)


@pytest.fixture
def no_sigpipe() -> Iterator[None]:
    old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGPIPE, old)


@pytest.mark.usefixtures("no_sigpipe")
def test_a_pipe_closed_before_the_headers_leaves_nothing(vmcore: Path) -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    with pytest.raises(OSError, match="Broken pipe"):
        collect_vmcore(open_dump(vmcore), None, ConvertOptions(1, "zlib", "flat"), stream_fd=write_fd)
    os.close(write_fd)


@pytest.mark.usefixtures("no_sigpipe")
def test_a_pipe_closed_midway_ends_in_failed_and_what_went_out_reads_back(vmcore: Path, tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    received = bytearray()

    def drain_some() -> None:  # the reader goes away after 300 KB (ssh dying mid-dump)
        while len(received) < 300_000 and (chunk := os.read(read_fd, 1 << 14)):
            received.extend(chunk)
        os.close(read_fd)

    reader = threading.Thread(target=drain_some)
    reader.start()
    col = collect_vmcore(open_dump(vmcore), None, ConvertOptions(1, "none", "flat"), stream_fd=write_fd)
    reader.join()
    os.close(write_fd)
    w = col.result.write
    assert col.exit_status == FAILED and w.incomplete and w.reason == "Broken pipe"
    assert 0 < w.pages_written < w.pages_total
    flat = tmp_path / "cut"
    flat.write_bytes(bytes(received))
    with pytest.warns(DumpWarning, match="incomplete"):
        dump = open_dump(flat)
    assert isinstance(dump, KdumpCompressed) and dump.incomplete  # the first header record still says so
    src = open_dump(vmcore)
    pages = dump_pages(src)
    got = 0
    for pfn in range(pages.present.size):
        try:
            page = dump.read_page(pfn)
        except FaultError:
            continue
        assert page == pages.read_pages(pfn, 1)
        got += 1
    assert got > 50
    pages.close()
    src.close()
    dump.close()


def test_one_thread_count_for_dump_convert_and_collect_vmcore() -> None:
    # issue 22 item 5: one default for both commands, in the converter's layer
    from kcrash.cli import dump as cli_dump
    from kcrash.collect import convert, vmcore

    assert vmcore.default_threads is convert.default_threads is cli_dump.default_threads
    cpus = len(os.sched_getaffinity(0))
    assert convert.default_threads("zstd") == convert.default_threads("zlib") == min(cpus, 64)
    assert convert.default_threads("lzo") == convert.default_threads("snappy") == 1


def test_collect_vmcore_and_dump_convert_filter_alike(vmcore: Path, tmp_path: Path) -> None:
    # Both go through kcrash.collect.convert.filter_and_write: one filter, one report, the same pages.
    opts = ConvertOptions(1, "zstd", "kdump")
    col = collect_vmcore(open_dump(vmcore), tmp_path / "collected", opts)
    conv = convert_dump(open_dump(vmcore), tmp_path / "converted", opts)
    assert col.result.report == conv.report
    assert col.result.report.ram_pages > 0 and col.result.write.pages_written == conv.write.pages_written
    assert _same_pages(tmp_path / "converted", tmp_path / "collected") == conv.write.pages_written
