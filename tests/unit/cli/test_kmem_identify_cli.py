"""CLI: kcrash kmem -i and kmem ADDR... on the synthetic mm kernel (tests/support/mm_kernel.py) put
in place of the opened dump: crash's kmem -i table and its JSON, addresses and SYMBOL+OFF from the
arguments and from stdin ("-"), and one-line errors with a non-zero exit for bad input."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from kcrash.analysis import identify
from kcrash.cli import kmem as kmem_cli
from kcrash.cli import main
from kcrash.helpers.linux.list import ListWalk
from kcrash.types.program import Program
from support.mm_kernel import GLOBALS, VMEMMAP, Kernel


@pytest.fixture
def dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    k = Kernel()
    k.u64(GLOBALS["_totalram_pages"], 5000)
    k.zone_stat("NR_FREE_PAGES", 400)
    k.node_stat("NR_FILE_PAGES", 200)

    @contextmanager
    def opened(path: str, *, orc: bool = True) -> Iterator[Program]:
        yield k.prog

    monkeypatch.setattr(kmem_cli, "opened_target", opened)
    monkeypatch.setattr(identify, "for_each_task", lambda prog, *, idle=False: ListWalk(lambda walk: iter(())))
    monkeypatch.setattr(identify, "kernel_unwinder", lambda prog: SimpleNamespace(thread_size=16384))
    monkeypatch.setattr(identify, "slab_object_info", lambda prog, address: None)
    path = tmp_path / "vmcore"
    path.write_bytes(b"")
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_kmem_i(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "kmem", dump, "-i")
    assert code == 0
    lines = out.splitlines()
    assert lines[:4] == ["                 PAGES        TOTAL      PERCENTAGE",
                         "    TOTAL MEM     5000      19.5 MB         ----",
                         "         FREE      400       1.6 MB    8% of TOTAL MEM",
                         "         USED     4600        18 MB   92% of TOTAL MEM"]
    assert "COMMIT LIMIT" in out
    assert "kcrash: warning: buffers:" in err  # the synthetic kernel has no blockdev_superblock
    code, out, _ = _run(capsys, "kmem", dump, "-i", "--json")
    data = json.loads(out)
    rows = {row["label"]: row for row in data["rows"]}
    # page counts are integers (issue 22 item 7): the slab pages too, under a name that is no address's
    assert data["slab_pages"] == rows["SLAB"]["pages"] and "slab" not in data
    assert rows["FREE"] == {"label": "FREE", "pages": 400, "bytes": 400 * 4096, "percent": 8, "of": "TOTAL MEM"}


def test_kmem_i_rejects_other_arguments(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "kmem", dump, "-i", "everything")
    assert code == 2 and err.count("\n") == 1 and "shared" in err


def test_kmem_addresses_from_arguments_and_stdin(dump: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{VMEMMAP + 64 + 2:#x}\n\n0x1000\n"))
    code, out, err = _run(capsys, "kmem", dump, "max_pfn+4", "-", "--json")
    assert code == 0, err
    found = json.loads(out)["addresses"]
    assert [f["description"] for f in found] == ["object symbol: max_pfn+0x4", "page: pfn 1 +0x2", "user address"]
    assert found[1]["page"]["pfn"] == 1 and isinstance(found[1]["page"]["flag_names"], list)
    code, out, _ = _run(capsys, "kmem", dump, f"{VMEMMAP + 64:x}")
    assert out.splitlines()[0] == f"{VMEMMAP + 64:016x}  page: pfn 1"
    assert "PAGE        PHYSICAL" in out


@pytest.mark.parametrize(("words", "status", "message"), [
    (("no_such_symbol",), 1, "no symbol 'no_such_symbol'"),
    (("12zz",), 2, "invalid address"),
    ((), 2, "kmem needs an ADDR"),
])
def test_kmem_bad_addresses(dump: Path, capsys: pytest.CaptureFixture[str], words: tuple[str, ...], status: int,
                            message: str) -> None:
    code, _, err = _run(capsys, "kmem", dump, *words)
    assert code == status and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_kmem_text_blocks(dump: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from kcrash.helpers.linux.slab import SlabObjectInfo
    from support.mm_kernel import PAGE, PAGE_OFFSET

    cache = 0xFFFF888000002000
    monkeypatch.setattr(identify, "slab_object_info", lambda prog, address: SlabObjectInfo(
        "kmalloc-64", cache, VMEMMAP + 3 * 64, address & ~63, address & 63, False)
        if PAGE_OFFSET + 3 * PAGE <= address < PAGE_OFFSET + 4 * PAGE else None)
    code, out, err = _run(capsys, "kmem", dump, f"{PAGE_OFFSET + 3 * PAGE + 0x48:#x}")
    assert code == 0, err
    assert out.splitlines()[:5] == [
        f"{PAGE_OFFSET + 3 * PAGE + 0x48:016x}  free slab object: kmalloc-64+0x8", "",
        "CACHE             OBJSIZE  NAME", f"{cache:016x}        0  kmalloc-64",
        "  SLAB              FREE / [ALLOCATED]"]
    assert out.splitlines()[5] == f"  {VMEMMAP + 3 * 64:016x}   {PAGE_OFFSET + 3 * PAGE + 0x40:x}"
    assert "PAGE        PHYSICAL" in out
